"""The relay: one HTTP server for the browser page and its WebSockets.

It serves the offline JupyterLite site and terminates the application's rpc
WebSockets in process (:meth:`Relay.add_rpc_route`). It also bridges allowlisted
TCP tunnels. Through them, clients on the server's host reach a machine in the
page (``/tunnel/listen``), and the page reaches a TCP service there
(``/tunnel/dial``). The
``am-relay`` command runs it on its own.

It is built on aiohttp, so one asyncio server does all of it on the loop that
also runs the machines and the rpc connections. aiohttp serves static files with
conditional and range requests, and upgrades WebSockets with a message size limit
and pings per socket. The tunnels use plain asyncio TCP streams on the same loop.
The rpc transport's WebSocket endpoint is already an aiohttp handler, so it
mounts as a route without an adapter.

:func:`serve_tunnel` is the page's side of a listen tunnel. It imports without
aiohttp, like this package, so it also runs in Pyodide.

Usage::

    from asyncmachine.relay import Relay

    relay = Relay("build/lite", token=token, repl_dir="tmp")
    await relay.start()
    print("open", relay.page_url)
    ...
    await relay.stop()
"""

from __future__ import annotations

from typing import Any

from .tunnel_client import TunnelClient, serve_tunnel

__all__ = [
    "DEFAULT_PORT",
    "Relay",
    "TunnelClient",
    "TunnelLimits",
    "serve_tunnel",
]

_AIOHTTP_NAMES = {
    "DEFAULT_PORT": "_relay",
    "Relay": "_relay",
    "TunnelLimits": "_tunnels",
}


def __getattr__(name: str) -> Any:
    # The server needs aiohttp, which Pyodide lacks: import it on first use.
    module_name = _AIOHTTP_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, name)

"""The page's side of the Pyodide tunnel test, run inside Pyodide by pyodide_page.mjs.

Not a pytest module: ``main`` runs in Pyodide's event loop (WebLoop) through
``runPythonAsync``, without asyncio.run() and without JSPI.
"""

import asyncio
import json
import sys

import rpyc

from asyncmachine.relay import serve_tunnel

MACHINE_ID = "browser-bar-pyo"


class PageService(rpyc.Service):
    """What the page exposes to TCP clients on the relay's host."""

    def __init__(self):
        self.disconnected = asyncio.Event()

    def on_disconnect(self, conn):
        self.disconnected.set()

    def exposed_add(self, a, b):
        return a + b

    def exposed_platform(self):
        return sys.platform


async def main(relay_url, token):
    """Serve one TCP client through the relay, then close; return JSON."""
    service = PageService()
    tunnel = await serve_tunnel(
        relay_url, token, MACHINE_ID, lambda: service, connect_timeout=30
    )
    address = await tunnel.wait_listening()
    # The test reads this line to find the port.
    print(json.dumps({"listening": address}))
    await service.disconnected.wait()
    await tunnel.close()
    return json.dumps({"closed": True, "listening": tunnel.listening})

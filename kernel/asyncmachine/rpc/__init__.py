"""Network transport for asyncmachine: awaitable rpyc connections and the wire codec.

Every connection is an :class:`AsyncConnection` (an rpyc connection dispatched on
the asyncio loop) over TCP, an aiohttp WebSocket, or the browser's WebSocket in
Pyodide. Both ends expose an rpyc service, so one connection carries calls in both
directions. :mod:`asyncmachine.rpc.wire` encodes the sync protocol's messages.

The WebSocket names that need aiohttp (:func:`serve_ws`, :func:`connect_ws`,
:class:`WebSocketEndpoint`, :class:`WebSocketServer`) are imported on first use, so
this package also imports where aiohttp is missing, such as Pyodide.

Usage::

    import rpyc
    from asyncmachine import rpc

    class Calculator(rpyc.Service):
        def exposed_add(self, a, b):
            return a + b

    server = await rpc.serve_tcp(Calculator, "127.0.0.1", 0)
    conn = await rpc.connect_tcp("127.0.0.1", server.port)
    assert await conn.call("add", 1, 2) == 3
    await conn.aclose()
    await server.close()
"""

from __future__ import annotations

from typing import Any

from . import wire
from ._blocking import BlockingMirror
from ._client import MirrorClient
from ._driver import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE,
    SAFE_RPYC_CONFIG,
    AsyncConnection,
    CallTimeoutError,
    ConnectionClosedError,
    ConnectionOptions,
    SyncRequestError,
    Transport,
    resolve_service,
)
from ._errors import (
    AccessDeniedError,
    HandshakeError,
    MirrorError,
    RemoteError,
    RemoteMutationError,
    RpcError,
)
from ._framing import FrameError, FrameTooLargeError
from ._hub import Hub
from ._listen import (
    SourceServer,
    SourceWebSocketHandler,
    serve_source,
    source_ws_handler,
)
from ._mirror import Mirror, connect_mirror
from ._peer import Peer, open_peer
from ._pipes import Pipe, pipe
from ._retry import RetryPolicy
from ._source import StateSource
from ._source_session import SourceSession
from ._states import (
    CLIENT_SCHEMA,
    CONSUMER_SCHEMA,
    LISTENER_SCHEMA,
    SERVER_SCHEMA,
    ClientStates,
    ListenerStates,
    ServerStates,
)
from ._transport_pyodide import connect_pyodide_ws
from ._transport_tcp import TcpServer, connect_tcp, serve_tcp

__all__ = [
    "CLIENT_SCHEMA",
    "CONSUMER_SCHEMA",
    "LISTENER_SCHEMA",
    "SERVER_SCHEMA",
    "AccessDeniedError",
    "BlockingMirror",
    "ClientStates",
    "HandshakeError",
    "Hub",
    "ListenerStates",
    "Mirror",
    "MirrorClient",
    "MirrorError",
    "Peer",
    "Pipe",
    "RemoteError",
    "RemoteMutationError",
    "RetryPolicy",
    "RpcError",
    "ServerStates",
    "SourceServer",
    "SourceSession",
    "SourceWebSocketHandler",
    "StateSource",
    "connect_mirror",
    "open_peer",
    "pipe",
    "serve_source",
    "source_ws_handler",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_FRAME_SIZE",
    "SAFE_RPYC_CONFIG",
    "AsyncConnection",
    "CallTimeoutError",
    "ConnectionClosedError",
    "ConnectionOptions",
    "FrameError",
    "FrameTooLargeError",
    "SyncRequestError",
    "TcpServer",
    "Transport",
    "WebSocketEndpoint",
    "WebSocketServer",
    "connect_pyodide_ws",
    "connect_tcp",
    "connect_ws",
    "resolve_service",
    "serve_tcp",
    "serve_ws",
    "wire",
]

_AIOHTTP_NAMES = frozenset(
    {"WebSocketEndpoint", "WebSocketServer", "connect_ws", "serve_ws"}
)


def __getattr__(name: str) -> Any:
    if name in _AIOHTTP_NAMES:
        from . import _transport_ws

        return getattr(_transport_ws, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

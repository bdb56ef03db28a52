"""rpyc over the browser's WebSocket in Pyodide (client only).

Uses the same :class:`AsyncConnection` as the CPython transports. The JavaScript
event handlers only copy bytes into the connection's queue and schedule loop
callbacks. Frames are dispatched by the asyncio loop (Pyodide's WebLoop), so
nothing depends on JSPI, and synchronous rpyc use raises a clear error instead of
hanging. Pyodide-only modules are imported inside functions, so this module
imports in CPython too.

NOTE: tested in Pyodide 314.0.6 under Node.js 20, with Node's WebSocket in place of
the browser's, with JSPI off. It has not run in a browser yet.

Usage (in a JupyterLite cell)::

    conn = await connect_pyodide_ws("ws://127.0.0.1:12733/rpc", BarService())
    print(await conn.call("add", 1, 2))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._driver import (
    DEFAULT_CONNECT_TIMEOUT,
    AsyncConnection,
    ConnectionOptions,
)

__all__ = ["connect_pyodide_ws"]

logger = logging.getLogger("asyncmachine.rpc")

# WebSocket.readyState values from the WHATWG WebSocket standard.
_OPEN = 1
# Bytes the browser may buffer for sending before the writer waits.
_MAX_BUFFERED_AMOUNT = 1 << 20
# Seconds between checks of bufferedAmount while the browser's buffer is full;
# the browser offers no event for a drained send buffer.
_BUFFER_POLL_INTERVAL = 0.01


class _BrowserWebSocketTransport:
    """Transport over a ``js.WebSocket`` with ``binaryType = "arraybuffer"``."""

    def __init__(self, url: str) -> None:
        from js import WebSocket
        from pyodide.ffi import create_proxy

        self.url = url
        self._loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self.conn: AsyncConnection | None = None
        # Bytes that arrive between "open" and the connection's creation.
        self._early: list[bytes] = []
        self._early_end: BaseException | None = None
        self._ws = WebSocket.new(url)
        self._ws.binaryType = "arraybuffer"
        self._handlers = {
            "open": create_proxy(self._on_open),
            "message": create_proxy(self._on_message),
            "error": create_proxy(self._on_error),
            "close": create_proxy(self._on_close),
        }
        for event_name, handler in self._handlers.items():
            self._ws.addEventListener(event_name, handler)

    def attach(self, conn: AsyncConnection) -> None:
        self.conn = conn
        for chunk in self._early:
            conn.feed(chunk)
        self._early.clear()
        if self._early_end is not None:
            conn.feed_eof(self._early_end)

    # JavaScript event handlers: they only queue data and resolve futures.

    def _on_open(self, event: Any) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def _on_message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, str):
            reason = "text WebSocket message received; rpyc needs binary ones"
            if self.conn is not None:
                self._loop.call_soon(self.conn.abort, reason)
            return
        chunk = data.to_bytes()
        if self.conn is None:
            self._early.append(chunk)
        else:
            self.conn.feed(chunk)

    def _on_error(self, event: Any) -> None:
        # The browser hides the cause; a close event always follows.
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"WebSocket connection to {self.url} failed")
            )

    def _on_close(self, event: Any) -> None:
        error = ConnectionResetError(
            f"WebSocket closed with code {event.code} {event.reason!r}"
        )
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.conn is None:
            self._early_end = error
        else:
            self.conn.feed_eof(error)
        # A proxy must not be destroyed while it runs.
        self._loop.call_soon(self._release_handlers)

    def _release_handlers(self) -> None:
        for event_name, handler in self._handlers.items():
            self._ws.removeEventListener(event_name, handler)
            handler.destroy()
        self._handlers = {}

    # Transport interface, used by the connection's writer task.

    async def write(self, data: bytes) -> None:
        from js import Uint8Array

        while self._ws.bufferedAmount > _MAX_BUFFERED_AMOUNT:
            if self._ws.readyState != _OPEN:
                break
            await asyncio.sleep(_BUFFER_POLL_INTERVAL)
        if self._ws.readyState != _OPEN:
            raise ConnectionResetError(f"WebSocket to {self.url} is not open")
        array = Uint8Array.new(len(data))
        array.assign(data)
        self._ws.send(array)

    async def close(self, *, abort: bool = False) -> None:
        # The browser has no abort: it sends queued bytes, then closes.
        self._ws.close()


async def connect_pyodide_ws(
    url: str,
    service: Any = None,
    *,
    options: ConnectionOptions | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    fetch_root: bool = True,
) -> AsyncConnection:
    """Open an rpyc connection over the browser's WebSocket and fetch the root.

    Only works inside Pyodide. The browser sends the page's ``Origin`` header,
    so the server must allow it.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint (``wss://`` when the page
            is served over HTTPS).
        service: What this end exposes to the server (None: nothing).
        options: Limits and timeouts.
        connect_timeout: Seconds allowed for opening the socket and the first
            request together.
        fetch_root: Fetch the peer's root before returning; False for a
            connection that only serves this end's service.

    Raises:
        TimeoutError: The connection was not ready within connect_timeout.
        ConnectionError: The browser could not open the WebSocket.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    transport = _BrowserWebSocketTransport(url)
    try:
        await asyncio.wait_for(asyncio.shield(transport.opened), connect_timeout)
    except TimeoutError:
        await transport.close(abort=True)
        raise TimeoutError(
            f"opening a WebSocket to {url} timed out after {connect_timeout} s"
        ) from None
    # The query may carry a token, and the peer text goes to logs.
    conn = AsyncConnection(
        service,
        transport,
        options=options,
        kind="pyodide-ws",
        peer=url.split("?", 1)[0],
    )
    transport.attach(conn)
    if not fetch_root:
        return conn
    try:
        await conn.get_root(timeout=max(0.0, deadline - loop.time()))
    except BaseException:
        await conn.aclose()
        raise
    return conn

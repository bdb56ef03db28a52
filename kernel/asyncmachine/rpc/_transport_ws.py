"""rpyc over WebSocket with aiohttp (CPython), server and client.

Each binary WebSocket message carries a slice of the rpyc byte stream: message
boundaries and rpyc frame boundaries are unrelated, so a relay may also bridge
these messages to a TCP rpyc server byte for byte. Text messages are a protocol
error.

Browsers let any page open a WebSocket to 127.0.0.1 and only add an ``Origin``
header, so the endpoint rejects every request whose Origin is not allowed. Token
checks belong to the application mounting the endpoint.

Usage::

    endpoint = WebSocketEndpoint(MyService, allowed_origins={"http://127.0.0.1:8000"})
    app.router.add_get("/rpc", endpoint.handle)

    conn = await connect_ws("ws://127.0.0.1:8000/rpc", MyClientService())
    print(await conn.call("add", 1, 2))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from ._driver import (
    DEFAULT_CONNECT_TIMEOUT,
    AsyncConnection,
    ConnectionOptions,
)
from ._framing import FRAME_OVERHEAD

__all__ = ["WebSocketEndpoint", "WebSocketServer", "connect_ws", "serve_ws"]

logger = logging.getLogger("asyncmachine.rpc")


def _max_message_size(options: ConnectionOptions) -> int:
    # One message may carry two whole frames of the maximum size; our own writer
    # sends at most 256 KiB or one frame per message.
    return max(2 * (options.max_frame_size + FRAME_OVERHEAD), 512 * 1024)


class _WebSocketTransport:
    """Transport over an aiohttp WebSocket (either side)."""

    def __init__(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        *,
        request: web.Request | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._ws = ws
        self._request = request
        self._session = session

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self, *, abort: bool = False) -> None:
        try:
            if abort and self._session is not None:
                # Closing the session closes its TCP connection without a
                # WebSocket closing handshake.
                return
            if abort and self._request is not None:
                transport = self._request.transport
                if transport is not None:
                    transport.abort()
            await self._ws.close()
        finally:
            if self._session is not None:
                await self._session.close()


async def _read_websocket(
    conn: AsyncConnection,
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Push every binary message into the connection until the socket closes."""
    error: BaseException | None = None
    try:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                await conn.receive(message.data)
            elif message.type is aiohttp.WSMsgType.TEXT:
                conn.abort("text WebSocket message received; rpyc needs binary ones")
                return
            elif message.type is aiohttp.WSMsgType.ERROR:
                error = ws.exception() or ConnectionError("WebSocket error")
                break
    except (ConnectionError, aiohttp.ClientError) as exc:
        error = exc
    if error is None:
        error = ConnectionResetError(f"WebSocket closed with code {ws.close_code}")
    conn.feed_eof(error)


class WebSocketEndpoint:
    """aiohttp request handler serving one :class:`AsyncConnection` per WebSocket.

    Mount its :meth:`handle` on any route:
    ``app.router.add_get("/rpc", endpoint.handle)``.

    Args:
        service: What each connection exposes (see
            :func:`~asyncmachine.rpc.resolve_service`).
        options: Limits and timeouts for every connection.
        allowed_origins: Values of the ``Origin`` header that may connect, e.g.
            ``{"http://127.0.0.1:8000"}``. Requests without the header (clients
            that are not browsers) are always accepted; a request with any
            other Origin gets HTTP 403.
        heartbeat: Seconds between WebSocket pings that detect dead peers, or
            None for no pings.
    """

    def __init__(
        self,
        service: Any,
        *,
        options: ConnectionOptions | None = None,
        allowed_origins: Collection[str] = (),
        heartbeat: float | None = None,
    ) -> None:
        self._service = service
        self._options = options or ConnectionOptions()
        self._allowed_origins = frozenset(allowed_origins)
        self._heartbeat = heartbeat
        self._connections: set[AsyncConnection] = set()

    @property
    def connections(self) -> frozenset[AsyncConnection]:
        """The connections currently open."""
        return frozenset(conn for conn in self._connections if not conn.closed)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket request until its connection closes."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._allowed_origins:
            logger.warning(
                "websocket endpoint: rejected origin %r from %s", origin, request.remote
            )
            raise web.HTTPForbidden(text=f"origin {origin!r} is not allowed\n")

        ws = web.WebSocketResponse(
            max_msg_size=_max_message_size(self._options), heartbeat=self._heartbeat
        )
        await ws.prepare(request)
        try:
            conn = AsyncConnection(
                self._service,
                _WebSocketTransport(ws, request=request),
                options=self._options,
                kind="ws",
                peer=f"{request.remote} {request.path}",
            )
        except Exception:
            logger.exception(
                "websocket endpoint: failed to set up a connection from %s",
                request.remote,
            )
            await ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR)
            return ws
        self._connections.add(conn)
        try:
            await _read_websocket(conn, ws)
            await conn.wait_closed(timeout=self._options.close_timeout)
        finally:
            conn.close()
            self._connections.discard(conn)
        return ws

    async def close(self) -> None:
        """Close every connection of this endpoint and wait for them."""
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            await conn.wait_closed(timeout=self._options.close_timeout)


class WebSocketServer:
    """A standalone aiohttp server with one :class:`WebSocketEndpoint`.

    Create it with :func:`serve_ws`.
    """

    def __init__(
        self, runner: web.AppRunner, endpoint: WebSocketEndpoint, path: str
    ) -> None:
        self._runner = runner
        self.endpoint = endpoint
        self.path = path
        address = runner.addresses[0]
        self.host: str = address[0]
        self.port: int = address[1]

    @property
    def url(self) -> str:
        """The endpoint's ``ws://`` URL."""
        return f"ws://{self.host}:{self.port}{self.path}"

    async def close(self) -> None:
        """Close every connection, then stop the HTTP server."""
        await self.endpoint.close()
        await self._runner.cleanup()
        logger.info("websocket server on port %d stopped", self.port)

    async def __aenter__(self) -> WebSocketServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve_ws(
    service: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "/rpc",
    options: ConnectionOptions | None = None,
    allowed_origins: Collection[str] = (),
) -> WebSocketServer:
    """Serve rpyc over WebSocket at ``ws://host:port/path`` on the running loop.

    Args:
        service: What each connection exposes.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (read it from ``server.port``).
        path: URL path of the endpoint.
        options: Limits and timeouts for every connection.
        allowed_origins: Browser origins allowed to connect (see
            :class:`WebSocketEndpoint`).

    Raises:
        OSError: The address cannot be bound, e.g. the port is in use.
    """
    endpoint = WebSocketEndpoint(
        service, options=options, allowed_origins=allowed_origins
    )
    app = web.Application()
    app.router.add_get(path, endpoint.handle)
    # Connections are closed before cleanup, so a short shutdown timeout only
    # bounds requests that are not WebSockets.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = WebSocketServer(runner, endpoint, path)
    logger.info("websocket server listening on %s", server.url)
    return server


async def connect_ws(
    url: str,
    service: Any = None,
    *,
    options: ConnectionOptions | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
    fetch_root: bool = True,
) -> AsyncConnection:
    """Open an rpyc connection over a WebSocket and fetch the peer's root service.

    Args:
        url: ``ws://`` or ``wss://`` URL of the endpoint.
        service: What this end exposes to the server (None: nothing).
        options: Limits and timeouts.
        connect_timeout: Seconds allowed for the WebSocket handshake and the
            first request together.
        origin: Value of the ``Origin`` header to send, if any.
        headers: Extra HTTP headers of the handshake, e.g. a token.
        fetch_root: Fetch the peer's root before returning. False suits a
            connection that only serves this end's service, such as a tunnel
            whose peer may stay silent.

    Raises:
        TimeoutError: The connection was not ready within connect_timeout.
        aiohttp.ClientError: The handshake failed, e.g. with HTTP 403.
        OSError: The TCP connection failed.
    """
    options = options or ConnectionOptions()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    session = aiohttp.ClientSession()
    try:
        ws = await asyncio.wait_for(
            session.ws_connect(
                url,
                max_msg_size=_max_message_size(options),
                origin=origin,
                headers=headers,
            ),
            connect_timeout,
        )
    except TimeoutError:
        await session.close()
        raise TimeoutError(
            f"connecting to {url} timed out after {connect_timeout} s"
        ) from None
    except BaseException:
        await session.close()
        raise
    conn = AsyncConnection(
        service,
        _WebSocketTransport(ws, session=session),
        options=options,
        kind="ws",
        peer=_url_without_query(url),
    )
    conn.attach_task(
        loop.create_task(_read_websocket(conn, ws), name=f"rpc-reader-{conn.conn_id}")
    )
    if not fetch_root:
        return conn
    try:
        await conn.get_root(timeout=max(0.0, deadline - loop.time()))
    except BaseException:
        await conn.aclose()
        raise
    return conn


def _url_without_query(url: str) -> str:
    """Drop the query, which may carry a token, from a URL shown in logs."""
    return url.split("?", 1)[0]

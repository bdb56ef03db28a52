"""rpyc over TCP on asyncio streams (CPython).

The bytes on the socket are rpyc's own stream, so a stock synchronous client
(``rpyc.connect(host, port)``) can call the exposed methods of a service served
here.

Usage::

    server = await serve_tcp(MyService, "127.0.0.1", 0)
    conn = await connect_tcp("127.0.0.1", server.port, MyClientService())
    print(await conn.call("add", 1, 2))
    await conn.aclose()
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from ._driver import (
    DEFAULT_CONNECT_TIMEOUT,
    AsyncConnection,
    ConnectionOptions,
)

__all__ = ["TcpServer", "connect_tcp", "serve_tcp"]

logger = logging.getLogger("asyncmachine.rpc")

_READ_SIZE = 64 * 1024


def is_loopback(host: str) -> bool:
    """Return whether a host name or IP address only accepts local connections."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _StreamTransport:
    """Transport over an asyncio StreamWriter."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self, *, abort: bool = False) -> None:
        if abort:
            self._writer.transport.abort()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


async def _read_stream(conn: AsyncConnection, reader: asyncio.StreamReader) -> None:
    """Push everything the socket delivers into the connection until it ends."""
    try:
        while not conn.closed:
            data = await reader.read(_READ_SIZE)
            if not data:
                conn.feed_eof()
                return
            await conn.receive(data)
    except (ConnectionError, OSError) as exc:
        conn.feed_eof(exc)


class TcpServer:
    """A listening TCP socket that serves one :class:`AsyncConnection` per client.

    Create it with :func:`serve_tcp`.
    """

    def __init__(self, service: Any, options: ConnectionOptions | None) -> None:
        self._service = service
        self._options = options or ConnectionOptions()
        self._server: asyncio.Server | None = None
        self._connections: set[AsyncConnection] = set()

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve_client, host, port)
        logger.info("tcp server listening on %s:%d", self.host, self.port)

    @property
    def host(self) -> str:
        """The bound address."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[0]

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> frozenset[AsyncConnection]:
        """The connections currently open."""
        return frozenset(conn for conn in self._connections if not conn.closed)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = _format_address(writer.get_extra_info("peername"))
        try:
            conn = AsyncConnection(
                self._service,
                _StreamTransport(writer),
                options=self._options,
                kind="tcp",
                peer=peer,
            )
        except Exception:
            logger.exception("tcp server: failed to set up a connection from %s", peer)
            writer.transport.abort()
            return
        self._connections.add(conn)
        try:
            await _read_stream(conn, reader)
            await conn.wait_closed(timeout=self._options.close_timeout)
        finally:
            # Runs on cancellation too, e.g. when the loop shuts down.
            conn.close()
            self._connections.discard(conn)

    async def close(self) -> None:
        """Stop listening, close every connection and wait for them."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            await conn.wait_closed(timeout=self._options.close_timeout)
        await server.wait_closed()
        logger.info("tcp server stopped")

    async def __aenter__(self) -> TcpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve_tcp(
    service: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    options: ConnectionOptions | None = None,
) -> TcpServer:
    """Listen on a TCP address and serve rpyc connections on the running loop.

    Args:
        service: What each connection exposes (see
            :func:`~asyncmachine.rpc.resolve_service`): pass a Service class or
            factory for per-connection state, or an instance to share it.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (read it from ``server.port``).
        options: Limits and timeouts for every connection.

    Raises:
        OSError: The address cannot be bound, e.g. the port is in use.
    """
    server = TcpServer(service, options)
    await server._start(host, port)
    return server


async def connect_tcp(
    host: str,
    port: int,
    service: Any = None,
    *,
    options: ConnectionOptions | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncConnection:
    """Open an rpyc connection over TCP and fetch the peer's root service.

    Args:
        host: Server address.
        port: Server port.
        service: What this end exposes to the server (None: nothing).
        options: Limits and timeouts.
        connect_timeout: Seconds allowed for the TCP connect and the first
            request together.

    Raises:
        TimeoutError: The connection was not ready within connect_timeout.
        OSError: The connection failed, e.g. it was refused.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except TimeoutError:
        raise TimeoutError(
            f"connecting to {host}:{port} timed out after {connect_timeout} s"
        ) from None
    conn = AsyncConnection(
        service,
        _StreamTransport(writer),
        options=options,
        kind="tcp",
        peer=f"{host}:{port}",
    )
    conn.attach_task(
        loop.create_task(_read_stream(conn, reader), name=f"rpc-reader-{conn.conn_id}")
    )
    try:
        await conn.get_root(timeout=max(0.0, deadline - loop.time()))
    except BaseException:
        await conn.aclose()
        raise
    return conn

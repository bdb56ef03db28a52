"""Allowlisted TCP tunnels over WebSockets: listen tunnels and dial tunnels.

A browser cannot listen on a TCP port, so a listen tunnel lets the relay listen
for it. The page opens a control WebSocket, and the relay binds the TCP listener.
The relay announces each accepted client on the control socket. The page then
opens one data WebSocket per client, and the relay copies bytes both ways::

    page                                   relay                     TCP client
    /tunnel/listen?id=M&addr=127.0.0.1:0 ->  bind, write M.addr
                          <- {"listening": "127.0.0.1:40111"}
                                                 <- accept --------  connect
                          <- {"open": "C"}
    /tunnel/data?conn=C  ->  bridge data WebSocket <-> TCP client  <- bytes ->

A dial tunnel (``/tunnel/dial?addr=HOST:PORT``) is the reverse: the relay
connects to an allowlisted TCP address and bridges it with the WebSocket.

Control messages are JSON text messages from the relay to the page. The page
sends nothing on the control socket; the relay ignores text it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from ._access import reject
from ._addresses import (
    AddressAllowlist,
    format_address,
    parse_address,
    validate_machine_id,
)
from ._bridge import bridge, websocket_max_msg_size

__all__ = ["TunnelLimits", "TunnelService"]

logger = logging.getLogger("asyncmachine.relay")

# The page sends nothing meaningful on a control socket.
_CONTROL_MAX_MESSAGE_SIZE = 4096
# Largest TCP read that becomes one WebSocket message.
_MAX_CHUNK_SIZE = 64 * 1024
# Seconds a graceful close waits for bridges and TCP clients before giving up.
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class TunnelLimits:
    """Limits and timeouts of the tunnels.

    Attributes:
        max_message_size: Largest WebSocket message accepted on a data or dial
            socket, in bytes; also bounds each message the relay sends.
        max_clients_per_tunnel: TCP clients one listen tunnel serves at once;
            more are disconnected at once.
        data_timeout: Seconds the page has to open the data WebSocket after an
            ``{"open": ...}`` message before the TCP client is disconnected.
        dial_timeout: Seconds allowed for a dial tunnel's TCP connect.
        heartbeat: Seconds between pings on control sockets, which detect pages
            that vanished without closing.
    """

    max_message_size: int = 1 << 20
    max_clients_per_tunnel: int = 16
    data_timeout: float = 10.0
    dial_timeout: float = 10.0
    heartbeat: float = 30.0

    @property
    def chunk_size(self) -> int:
        """Largest TCP read copied into one WebSocket message."""
        return min(_MAX_CHUNK_SIZE, self.max_message_size)


@dataclass(eq=False)
class _TunnelClient:
    """One accepted TCP client of a listen tunnel, waiting for or in a bridge."""

    conn_id: str
    tunnel: _ListenTunnel
    peer: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    claimed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Stop waiting and drop the TCP connection."""
        self.claimed.set()
        self.finished.set()
        self.writer.transport.abort()


class _ListenTunnel:
    """A TCP listener owned by one control WebSocket."""

    def __init__(
        self, service: TunnelService, machine_id: str, request_id: str
    ) -> None:
        self.service = service
        self.machine_id = machine_id
        self.request_id = request_id
        self.address = ""
        self.control: web.WebSocketResponse | None = None
        self.server: asyncio.Server | None = None
        self.clients: dict[str, _TunnelClient] = {}
        self.closed = False
        self._address_file: Path | None = None
        self._closed_event = asyncio.Event()

    def describe(self) -> str:
        return f"listen tunnel {self.request_id} of {self.machine_id!r}"

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Announce one accepted TCP client and wait until its bridge ends."""
        peer = _peer_of(writer)
        if self.closed or self.control is None:
            logger.info(
                "%s: rejected TCP client %s: the tunnel is closing",
                self.describe(),
                peer,
            )
            writer.transport.abort()
            return
        limit = self.service.limits.max_clients_per_tunnel
        if len(self.clients) >= limit:
            logger.warning(
                "%s: rejected TCP client %s: %d clients already connected",
                self.describe(),
                peer,
                limit,
            )
            writer.transport.abort()
            return

        client = _TunnelClient(secrets.token_urlsafe(12), self, peer, reader, writer)
        self.clients[client.conn_id] = client
        self.service.pending[client.conn_id] = client
        try:
            await self.control.send_json({"open": client.conn_id})
            logger.info(
                "%s: TCP client %s accepted as connection %s",
                self.describe(),
                peer,
                client.conn_id,
            )
            try:
                await asyncio.wait_for(
                    client.claimed.wait(), self.service.limits.data_timeout
                )
            except TimeoutError:
                logger.warning(
                    "%s: connection %s closed: no data WebSocket within %s s",
                    self.describe(),
                    client.conn_id,
                    self.service.limits.data_timeout,
                )
                return
            await client.finished.wait()
        except (ConnectionError, RuntimeError) as exc:
            logger.warning(
                "%s: connection %s closed: the control WebSocket failed: %r",
                self.describe(),
                client.conn_id,
                exc,
            )
        finally:
            self.clients.pop(client.conn_id, None)
            self.service.pending.pop(client.conn_id, None)
            writer.transport.abort()

    async def read_control(self) -> str:
        """Read the control socket until it closes and return why it closed."""
        assert self.control is not None
        async for message in self.control:
            if message.type is aiohttp.WSMsgType.TEXT:
                logger.debug(
                    "%s: ignored a control message of %d characters",
                    self.describe(),
                    len(message.data),
                )
            elif message.type is aiohttp.WSMsgType.BINARY:
                await self.control.close(
                    code=aiohttp.WSCloseCode.UNSUPPORTED_DATA,
                    message=b"text messages only",
                )
                return "binary message received on the control socket"
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"control WebSocket error: {self.control.exception()!r}"
        return f"control WebSocket closed with code {self.control.close_code}"

    def write_address_file(self) -> None:
        repl_dir = self.service.repl_dir
        if repl_dir is None:
            return
        path = repl_dir / f"{self.machine_id}.addr"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        repl_dir.mkdir(parents=True, exist_ok=True)
        temporary.write_text(self.address + "\n", encoding="utf-8")
        os.replace(temporary, path)
        self._address_file = path
        logger.info("%s: wrote address file %s", self.describe(), path)

    def _remove_address_file(self) -> None:
        path, self._address_file = self._address_file, None
        if path is None:
            return
        # A tunnel that replaced this one may own the file by now.
        if self.service.listen_tunnels.get(self.machine_id) not in (None, self):
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.error(
                "%s: could not remove address file %s: %r", self.describe(), path, exc
            )
            return
        logger.info("%s: removed address file %s", self.describe(), path)

    async def close(self, reason: str) -> None:
        """Stop listening, drop every client, close the control socket.

        Safe to call more than once; later calls wait for the first one.
        """
        if self.closed:
            await self._closed_event.wait()
            return
        self.closed = True
        try:
            # Once the file is gone, the port no longer accepts clients.
            if self.server is not None:
                self.server.close()
            self._remove_address_file()
            clients = list(self.clients.values())
            for client in clients:
                client.release()
            if self.control is not None and not self.control.closed:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await self.control.close(
                        code=aiohttp.WSCloseCode.GOING_AWAY,
                        message=reason[:100].encode(),
                    )
            if self.server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.server.wait_closed(), _CLOSE_TIMEOUT)
            if self.service.listen_tunnels.get(self.machine_id) is self:
                del self.service.listen_tunnels[self.machine_id]
            logger.info(
                "%s on %s closed: %s (%d connections dropped)",
                self.describe(),
                self.address or "no address",
                reason,
                len(clients),
            )
        finally:
            self._closed_event.set()


class TunnelService:
    """Request handlers and bookkeeping of listen, data and dial tunnels.

    The relay checks Origin and token before calling a handler.

    Args:
        listen_allowlist: Addresses the relay may listen on for pages.
        dial_allowlist: Addresses the relay may connect to for pages.
        repl_dir: Directory for ``<machine-id>.addr`` files, or None.
        limits: Limits and timeouts.
    """

    def __init__(
        self,
        *,
        listen_allowlist: AddressAllowlist,
        dial_allowlist: AddressAllowlist,
        repl_dir: Path | None,
        limits: TunnelLimits,
    ) -> None:
        self.listen_allowlist = listen_allowlist
        self.dial_allowlist = dial_allowlist
        self.repl_dir = repl_dir
        self.limits = limits
        self.listen_tunnels: dict[str, _ListenTunnel] = {}
        self.pending: dict[str, _TunnelClient] = {}
        self._dial_bridges: set[asyncio.StreamWriter] = set()
        self.closing = False

    @property
    def listen_addresses(self) -> dict[str, str]:
        """The bound ``HOST:PORT`` of each open listen tunnel, by machine id."""
        return {
            machine_id: tunnel.address
            for machine_id, tunnel in self.listen_tunnels.items()
            if tunnel.address
        }

    async def handle_listen(
        self, request: web.Request, request_id: str
    ) -> web.StreamResponse:
        """Serve ``/tunnel/listen?id=MACHINE&addr=HOST:PORT`` (the control socket)."""
        machine_id = request.query.get("id", "")
        try:
            validate_machine_id(machine_id)
            host, port = parse_address(request.query.get("addr", ""))
        except ValueError as exc:
            return reject(request, request_id, 400, str(exc))
        if (host, port) not in self.listen_allowlist:
            return reject(
                request,
                request_id,
                403,
                f"listen address {format_address(host, port)} not allowed",
            )

        tunnel = _ListenTunnel(self, machine_id, request_id)
        try:
            tunnel.server = await asyncio.start_server(
                tunnel.serve_client, host, port, start_serving=False
            )
        except OSError as exc:
            return reject(
                request,
                request_id,
                503,
                f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}",
            )
        bound_host, bound_port = tunnel.server.sockets[0].getsockname()[:2]
        tunnel.address = format_address(bound_host, bound_port)

        control = web.WebSocketResponse(
            max_msg_size=_CONTROL_MAX_MESSAGE_SIZE, heartbeat=self.limits.heartbeat
        )
        try:
            await control.prepare(request)
        except BaseException:
            tunnel.server.close()
            raise
        tunnel.control = control

        previous = self.listen_tunnels.get(machine_id)
        self.listen_tunnels[machine_id] = tunnel
        reason = "relay stopped"
        try:
            if previous is not None:
                await previous.close(f"replaced by request {request_id}")
            if self.closing:
                return control
            # The port accepts clients before the file names it, and the file
            # exists before the page learns the address.
            await tunnel.server.start_serving()
            tunnel.write_address_file()
            await control.send_json({"listening": tunnel.address})
            logger.info(
                "%s: listening on %s for %s",
                tunnel.describe(),
                tunnel.address,
                request.remote,
            )
            reason = await tunnel.read_control()
        except (ConnectionError, OSError, RuntimeError) as exc:
            reason = f"failed: {exc!r}"
            logger.error("%s: %s", tunnel.describe(), reason)
        finally:
            await tunnel.close(reason)
        return control

    async def handle_data(
        self, request: web.Request, request_id: str
    ) -> web.StreamResponse:
        """Serve ``/tunnel/data?conn=ID``: bridge one announced TCP client."""
        conn_id = request.query.get("conn", "")
        client = self.pending.pop(conn_id, None)
        if client is None or client.claimed.is_set():
            return reject(request, request_id, 404, "unknown or expired connection id")
        client.claimed.set()
        tunnel = client.tunnel
        try:
            ws = web.WebSocketResponse(
                max_msg_size=websocket_max_msg_size(self.limits.max_message_size)
            )
            await ws.prepare(request)
            logger.info(
                "%s: connection %s bridged with data request %s from %s",
                tunnel.describe(),
                conn_id,
                request_id,
                request.remote,
            )
            result = await bridge(
                ws,
                client.reader,
                client.writer,
                chunk_size=self.limits.chunk_size,
                max_message_size=self.limits.max_message_size,
            )
            logger.info(
                "%s: connection %s closed: %s (%d bytes to TCP, %d bytes to WebSocket)",
                tunnel.describe(),
                conn_id,
                result.reason,
                result.bytes_to_tcp,
                result.bytes_to_websocket,
            )
        finally:
            client.finished.set()
        return ws

    async def handle_dial(
        self, request: web.Request, request_id: str
    ) -> web.StreamResponse:
        """Serve ``/tunnel/dial?addr=HOST:PORT``: bridge a new TCP connection."""
        try:
            host, port = parse_address(request.query.get("addr", ""))
        except ValueError as exc:
            return reject(request, request_id, 400, str(exc))
        address = format_address(host, port)
        if (host, port) not in self.dial_allowlist:
            return reject(
                request, request_id, 403, f"dial address {address} not allowed"
            )

        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.limits.dial_timeout
            )
        except TimeoutError:
            return reject(
                request, request_id, 502, f"connecting to {address} timed out"
            )
        except OSError as exc:
            return reject(
                request,
                request_id,
                502,
                f"cannot connect to {address}: {exc.strerror or exc}",
            )

        if self.closing:
            writer.transport.abort()
            return reject(request, request_id, 503, "relay is stopping")
        self._dial_bridges.add(writer)
        try:
            ws = web.WebSocketResponse(
                max_msg_size=websocket_max_msg_size(self.limits.max_message_size)
            )
            await ws.prepare(request)
            logger.info(
                "dial tunnel %s: %s connected to %s",
                request_id,
                request.remote,
                address,
            )
            result = await bridge(
                ws,
                reader,
                writer,
                chunk_size=self.limits.chunk_size,
                max_message_size=self.limits.max_message_size,
            )
            logger.info(
                "dial tunnel %s to %s closed: %s (%d bytes to TCP, %d bytes to "
                "WebSocket)",
                request_id,
                address,
                result.reason,
                result.bytes_to_tcp,
                result.bytes_to_websocket,
            )
        finally:
            self._dial_bridges.discard(writer)
            writer.transport.abort()
        return ws

    async def close(self) -> None:
        """Close every tunnel, remove address files and drop TCP connections."""
        self.closing = True
        for writer in list(self._dial_bridges):
            writer.transport.abort()
        tunnels = list(self.listen_tunnels.values())
        await asyncio.gather(
            *(tunnel.close("relay stopped") for tunnel in tunnels),
            return_exceptions=True,
        )


def _peer_of(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return str(peer)

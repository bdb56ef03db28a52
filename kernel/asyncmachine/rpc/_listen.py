"""Listeners of state sources: TCP, WebSocket, and a handler for any aiohttp app.

One listener serves many mirrors: every connection gets its own
:class:`~asyncmachine.rpc.Peer`, and every mirror's hello on it opens a session
with the source. A listener also offers the source's plain methods (the REPL
service of :mod:`asyncmachine.rpc.repl`) on the same connections, for stock rpyc
clients.

Usage::

    server = await serve_source(mach, "127.0.0.1:0", push_interval=0.01)
    mirror = await connect_mirror(server.addr, id="bar")

    handler = source_ws_handler(mach, allowed_origins={"http://127.0.0.1:8000"})
    app.router.add_get("/rpc", handler.handle)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._driver import ConnectionOptions
from ._peer import Peer, parse_address
from ._source import DEFAULT_DEDUP_WINDOW, DEFAULT_PUSH_INTERVAL, StateSource
from ._states import LISTENER_SCHEMA, ListenerStates
from ._transport_tcp import is_loopback

if TYPE_CHECKING:
    from aiohttp import web

    from ._source import SourceSession

__all__ = [
    "SourceServer",
    "SourceWebSocketHandler",
    "serve_source",
    "source_ws_handler",
]

logger = logging.getLogger("asyncmachine.rpc")

_DEFAULT = object()


def _as_source(
    source: StateSource | am.Machine,
    token: str | None,
    allowed_ids: Collection[str] | None,
    push_interval: Any,
    dedup_window: int,
) -> StateSource:
    if isinstance(source, StateSource):
        if (
            token is not None
            or allowed_ids is not None
            or push_interval is not _DEFAULT
        ):
            raise ValueError(
                f"source {source.id} already has its options; pass token, "
                "allowed_ids and push_interval to StateSource instead"
            )
        return source
    interval = DEFAULT_PUSH_INTERVAL if push_interval is _DEFAULT else push_interval
    return StateSource(
        source,
        token=token,
        allowed_ids=allowed_ids,
        push_interval=interval,
        dedup_window=dedup_window,
    )


def repl_plain_face(source: StateSource) -> Callable[[Peer], Any] | None:
    """Return a factory of the REPL service's plain methods for a source.

    Returns None when :mod:`asyncmachine.rpc.repl` cannot be imported.
    """
    try:
        from .repl import ReplEndpoint, ReplService
    except ImportError as err:
        logger.debug("no plain methods for source %s: %r", source.id, err)
        return None
    # NOTE: the endpoint is built without its own listener; it only carries the
    # machine and the token the REPL service checks.
    endpoint = ReplEndpoint(source.machine, source.token)

    def make(peer: Peer) -> Any:
        return ReplService(endpoint)

    return make


class _Listener:
    """Shared part of the listeners: the sources, the machine and the peers."""

    def __init__(
        self,
        sources: list[StateSource],
        plain_service: Any,
        on_peer: Callable[[Peer], Any] | None,
        kind: str,
    ) -> None:
        self.sources = sources
        self.source = sources[0]
        self._on_peer = on_peer
        if plain_service is _DEFAULT:
            plain_service = repl_plain_face(self.source)
        self._plain_service = plain_service
        self._peers: set[Peer] = set()
        self.machine = am.Machine(
            LISTENER_SCHEMA,
            id=f"rm-{self.source.id}-{kind}",
            state_order=ListenerStates.names(),
            tags=("rpc-mux",),
        )
        self.machine.add(ListenerStates.Start)

    @property
    def sessions(self) -> tuple[SourceSession, ...]:
        """The sessions of every source of this listener."""
        return tuple(s for source in self.sources for s in source.sessions)

    @property
    def peers(self) -> frozenset[Peer]:
        """The peers of the open connections."""
        return frozenset(self._peers)

    def _new_hub(self) -> Any:
        peer = Peer(
            sources=self.sources,
            token=self.source.token,
            plain_service=self._plain_service,
            on_connect=self._peer_connected,
            on_disconnect=self._peer_disconnected,
            name=f"{self.machine.id} client",
        )
        return peer.new_hub()

    def _peer_connected(self, peer: Peer) -> None:
        self._peers.add(peer)
        self.machine.add(ListenerStates.ClientConnected)
        self.machine.add(ListenerStates.HasClients)
        if self._on_peer is not None:
            self._on_peer(peer)

    def _peer_disconnected(self, peer: Peer) -> None:
        self._peers.discard(peer)
        if not self._peers:
            self.machine.remove(ListenerStates.HasClients)

    async def send_payload(
        self,
        client_id: str | None,
        name: str,
        data: Any = None,
        *,
        event: am.Event | None = None,
    ) -> int:
        """Send a payload to the mirrors of a client (see StateSource.send_payload)."""
        return await self.source.send_payload(client_id, name, data, event=event)


class SourceServer(_Listener):
    """A TCP or WebSocket listener of a state source. Create it with serve_source."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server: Any = None
        self.transport = ""
        self.path = ""

    @property
    def host(self) -> str:
        """The bound host."""
        return self._server.host

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    @property
    def addr(self) -> str:
        """Where mirrors connect: ``host:port``, or the ``ws://`` URL."""
        if self.transport == "ws":
            return self._server.url
        return f"{self.host}:{self.port}"

    async def close(self) -> None:
        """Say bye to every mirror, close the connections and stop listening."""
        for source in self.sources:
            await source.close()
        if self._server is not None:
            await self._server.close()
        self.machine.remove(ListenerStates.Start)
        logger.info("%s: stopped", self.machine.id)

    async def __aenter__(self) -> SourceServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<SourceServer {self.source.id} {self.addr}>"


async def serve_source(
    source: StateSource | am.Machine,
    addr: str = "127.0.0.1:0",
    *,
    token: str | None = None,
    allowed_ids: Collection[str] | None = None,
    push_interval: float | None = _DEFAULT,  # type: ignore[assignment]
    transport: str = "tcp",
    path: str = "/",
    allowed_origins: Collection[str] = (),
    options: ConnectionOptions | None = None,
    plain_service: Any = _DEFAULT,
    on_peer: Callable[[Peer], Any] | None = None,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
    extra_sources: Iterable[StateSource | am.Machine] = (),
) -> SourceServer:
    """Serve a machine to mirrors over TCP or WebSocket on the running loop.

    Args:
        source: The machine, or a :class:`StateSource` with its options set.
        addr: ``host:port`` to bind; port 0 picks a free one.
        token: Secret every mirror (and every stock client, with ``auth``) must
            present. Required when `addr` is not a loopback address.
        allowed_ids: Client ids allowed to connect; None allows every id.
        push_interval: See :class:`StateSource`; default 0.05 s.
        transport: ``"tcp"`` or ``"ws"``.
        path: URL path of the WebSocket endpoint.
        allowed_origins: Browser origins allowed to open the WebSocket.
        options: Connection limits.
        plain_service: Factory ``(peer) -> object`` of the plain methods for
            stock rpyc clients; default: the REPL service; None for none.
        on_peer: Called with the :class:`Peer` of each new connection, e.g. to
            open a mirror of a source on the other end over it.
        dedup_window: See :class:`StateSource`.
        extra_sources: More sources offered on the same connections; a mirror
            picks one by its ``source_id``.

    Raises:
        ValueError: No token for an address other than loopback, an invalid
            address or transport.
        OSError: The address cannot be bound.
    """
    host, port = parse_address(addr)
    if transport not in ("tcp", "ws"):
        raise ValueError(f"transport must be 'tcp' or 'ws', got {transport!r}")
    main = _as_source(source, token, allowed_ids, push_interval, dedup_window)
    if main.token is None and not is_loopback(host):
        raise ValueError(
            f"listening on {host} needs a token: pass token=... (any secret the "
            "mirrors also get), or listen on 127.0.0.1"
        )
    sources = [
        main,
        *(_as_source(s, None, None, _DEFAULT, dedup_window) for s in extra_sources),
    ]
    server = SourceServer(sources, plain_service, on_peer, transport)
    server.transport = transport
    try:
        if transport == "tcp":
            from ._transport_tcp import serve_tcp

            server._server = await serve_tcp(
                server._new_hub, host, port, options=options
            )
        else:
            from ._transport_ws import serve_ws

            server.path = path
            server._server = await serve_ws(
                server._new_hub,
                host,
                port,
                path=path,
                options=options,
                allowed_origins=allowed_origins,
            )
    except BaseException:
        for item in sources:
            await item.close()
        raise
    server.machine.add(ListenerStates.Ready)
    logger.info("%s: serving source %s on %s", server.machine.id, main.id, server.addr)
    return server


class SourceWebSocketHandler(_Listener):
    """An aiohttp request handler serving a state source over WebSocket.

    Mount :meth:`handle` on a route of any aiohttp application (a relay):
    ``app.router.add_get("/rpc", handler.handle)``. Create it with
    :func:`source_ws_handler`.
    """

    def __init__(
        self, *args: Any, endpoint_options: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        from ._transport_ws import WebSocketEndpoint

        self._endpoint = WebSocketEndpoint(self._new_hub, **endpoint_options)
        self.machine.add(ListenerStates.Ready)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket request until its connection closes."""
        return await self._endpoint.handle(request)

    async def close(self) -> None:
        """Say bye to every mirror and close the connections."""
        for source in self.sources:
            await source.close()
        await self._endpoint.close()
        self.machine.remove(ListenerStates.Start)


def source_ws_handler(
    source: StateSource | am.Machine,
    *,
    token: str | None = None,
    allowed_ids: Collection[str] | None = None,
    push_interval: float | None = _DEFAULT,  # type: ignore[assignment]
    allowed_origins: Collection[str] = (),
    options: ConnectionOptions | None = None,
    heartbeat: float | None = None,
    plain_service: Any = _DEFAULT,
    on_peer: Callable[[Peer], Any] | None = None,
    dedup_window: int = DEFAULT_DEDUP_WINDOW,
    extra_sources: Iterable[StateSource | am.Machine] = (),
) -> SourceWebSocketHandler:
    """Return an aiohttp handler that serves a source to mirrors over WebSocket.

    One WebSocket may carry sessions in both directions: the browser's mirrors
    of the sources offered here, and, through `on_peer`, mirrors of the
    browser's own sources opened by this end.

    Args:
        source: The machine, or a :class:`StateSource` with its options set.
        token, allowed_ids, push_interval, plain_service, on_peer, dedup_window,
            extra_sources: As for :func:`serve_source`.
        allowed_origins: Browser origins allowed to connect (the ``Origin``
            header); requests without the header are accepted.
        options: Connection limits.
        heartbeat: Seconds between WebSocket pings, or None.

    Must be called with a running asyncio loop.
    """
    main = _as_source(source, token, allowed_ids, push_interval, dedup_window)
    sources = [
        main,
        *(_as_source(s, None, None, _DEFAULT, dedup_window) for s in extra_sources),
    ]
    return SourceWebSocketHandler(
        sources,
        plain_service,
        on_peer,
        "ws",
        endpoint_options={
            "options": options,
            "allowed_origins": allowed_origins,
            "heartbeat": heartbeat,
        },
    )

"""Peers: the ends of connections that carry sync sessions in both directions.

A :class:`Peer` is one end over time. It offers local sources to the other end
and keeps the local mirrors of the other end's sources; each connection's
:class:`~asyncmachine.rpc.Hub` routes their messages. One connection can carry
several sessions each way, e.g. a browser's mirror of ``server-foo`` and the
server's mirror of ``browser-bar`` over one WebSocket. A peer that dialed its
connection reconnects after a loss and repeats every mirror's handshake.

Usage::

    peer = await open_peer("ws://127.0.0.1:8000/rpc", sources=[bar_source])
    foo = await peer.mirror(id="browser-bar-k3j", source_id="server-foo")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._driver import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    AsyncConnection,
    ConnectionClosedError,
    ConnectionOptions,
)
from ._hub import Hub
from ._retry import RetryPolicy
from ._source import StateSource

if TYPE_CHECKING:
    from ._client import MirrorClient
    from ._mirror import Mirror

__all__ = ["Peer", "make_dial", "open_peer", "parse_address"]

logger = logging.getLogger("asyncmachine.rpc")

Dial = Callable[[Hub], Awaitable[AsyncConnection]]


class Peer:
    """One end of a connection carrying sync sessions, over its reconnections.

    A peer created by :func:`open_peer` (or :func:`connect_mirror`) dials, and
    after losing its connection dials again with backoff, then repeats every
    mirror's handshake, which resyncs each mirror in one transition. A peer of
    an accepted connection cannot reconnect: its mirrors stay disconnected and
    the other end's next connection makes a new peer.

    Args:
        sources: Local sources (or machines) offered to the other end's mirrors.
        dial: Opens a connection whose local service is the given hub; None for
            peers of accepted connections.
        retry: Reconnect attempts and backoff.
        call_timeout: Seconds a request waits for its reply.
        token: Secret that unlocks the plain methods (``auth(token)``).
        plain_service: Factory of the plain methods' object, called per
            connection with this peer (see :class:`Hub`).
        on_connect: Called with the peer after each new connection.
        on_disconnect: Called with the peer after each lost connection.
        name: Used in logs.
    """

    def __init__(
        self,
        *,
        sources: Iterable[StateSource | am.Machine] = (),
        dial: Dial | None = None,
        retry: RetryPolicy | None = None,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        token: str | None = None,
        plain_service: Callable[[Peer], Any] | None = None,
        on_connect: Callable[[Peer], Any] | None = None,
        on_disconnect: Callable[[Peer], Any] | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self.retry = retry or RetryPolicy()
        self.call_timeout = call_timeout
        self.token = token
        self.hub: Hub | None = None
        self._sources: dict[str, StateSource] = {}
        for source in sources:
            self.offer(source)
        self._dial = dial
        self._plain_service = plain_service
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._clients: list[MirrorClient] = []
        self._closed = False
        self._failures = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self.hub is not None:
            state = self.hub.describe()
        else:
            state = "idle"
        return f"<Peer {self.name or '?'} {state}>"

    @property
    def conn(self) -> AsyncConnection | None:
        """The current connection, or None."""
        return self.hub.conn if self.hub is not None else None

    @property
    def connected(self) -> bool:
        """Whether the current connection is open."""
        conn = self.conn
        return conn is not None and not conn.closed

    @property
    def mirrors(self) -> tuple[Mirror, ...]:
        """The local mirrors of this peer's sessions."""
        return tuple(c.mirror for c in self._clients if c.mirror is not None)

    def offer(self, source: StateSource | am.Machine) -> StateSource:
        """Offer a local source to the other end's mirrors; return it.

        A machine is wrapped in a new :class:`StateSource` with default options.
        """
        if isinstance(source, am.Machine):
            source = StateSource(source)
        if not isinstance(source, StateSource):
            raise TypeError(f"expected a StateSource or a Machine, got {source!r}")
        self._sources[source.id] = source
        return source

    def _find_source(self, source_id: str) -> StateSource | None:
        if source_id:
            return self._sources.get(source_id)
        if len(self._sources) == 1:
            return next(iter(self._sources.values()))
        return None

    def new_hub(self) -> Hub:
        """Return the service for a new connection of this peer."""
        return Hub(self)

    def _new_plain_face(self) -> Any:
        if self._plain_service is None:
            return None
        return self._plain_service(self)

    # -- connection lifecycle ----------------------------------------------------------

    def _on_hub_connect(self, hub: Hub) -> None:
        self.hub = hub
        self._connected.set()
        for client in list(self._clients):
            client._connected()
        if self._on_connect is not None:
            try:
                self._on_connect(self)
            except Exception:
                logger.exception("%s: the on_connect callback failed", hub.describe())

    def _on_hub_disconnect(self, hub: Hub) -> None:
        if hub is not self.hub:
            return
        self._connected.clear()
        reason = getattr(hub.conn, "close_reason", None) or "closed"
        for client in list(self._clients):
            client._connection_lost(
                reason,
                final=self._dial is None or self._closed,
                # The other end opened this connection, so its leaving is a
                # normal end of the mirror, as for a session on a source.
                expected=self._dial is None,
            )
        if self._on_disconnect is not None:
            try:
                self._on_disconnect(self)
            except Exception:
                logger.exception(
                    "%s: the on_disconnect callback failed", hub.describe()
                )

    async def start(self) -> None:
        """Dial the first connection (with retries) and start reconnecting on loss.

        Raises:
            RuntimeError: The peer has no dial function.
            Exception: The last connection error once the retries are used up.
        """
        if self._dial is None:
            raise RuntimeError("a peer of an accepted connection cannot dial")
        await self._dial_with_retry()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"rpc-peer-{self.name}"
        )

    async def _dial_with_retry(self) -> None:
        assert self._dial is not None
        while True:
            if self._closed:
                raise ConnectionClosedError(f"peer {self.name} is closed")
            for client in list(self._clients):
                client._connecting()
            try:
                await self._dial(self.new_hub())
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._failures += 1
                logger.warning(
                    "peer %s: connection attempt %d failed: %r",
                    self.name,
                    self._failures,
                    err,
                )
                for client in list(self._clients):
                    client._connect_failed(err)
                if self._failures > self.retry.attempts:
                    raise
                for client in list(self._clients):
                    client._retrying()
                await asyncio.sleep(self.retry.delay(self._failures))

    async def _supervise(self) -> None:
        """Reconnect after each lost connection and repeat the handshakes."""
        while not self._closed:
            conn = self.conn
            if conn is not None:
                await conn.wait_closed()
            if self._closed:
                return
            logger.info("peer %s: connection lost, reconnecting", self.name)
            try:
                await self._dial_with_retry()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                logger.error(
                    "peer %s: gave up reconnecting after %d attempts: %r",
                    self.name,
                    self._failures,
                    err,
                )
                for client in list(self._clients):
                    client._give_up(err)
                return
            for client in list(self._clients):
                client._start_handshake()

    def _handshake_failed(
        self, hub: Hub, client: MirrorClient, err: BaseException
    ) -> None:
        """Count a failed handshake and drop the connection, so a new one is dialed.

        Once the retries are used up, the client gives up instead.
        """
        self._failures += 1
        if self._failures > self.retry.attempts:
            logger.error(
                "peer %s: handshake failed %d times, giving up: %r",
                self.name,
                self._failures,
                err,
            )
            client._give_up(err)
            return
        if hub.conn is not None and not hub.conn.closed:
            hub.conn.abort(f"handshake failed: {err!r}")

    def _handshake_done(self) -> None:
        self._failures = 0

    # -- mirrors -----------------------------------------------------------------------

    async def mirror(
        self,
        *,
        id: str,
        source_id: str = "",
        token: str | None = None,
        sync_schema: bool = True,
        allowed: Iterable[str] | None = None,
        skipped: Iterable[str] | None = None,
        shallow: bool = False,
        per_mutation: bool = False,
        handlers: Any = None,
        consumer: am.Machine | None = None,
        mirror_id: str | None = None,
    ) -> Mirror:
        """Open a mirror of a source on the other end; return it once synced.

        See :func:`~asyncmachine.rpc.connect_mirror` for the arguments.

        Raises:
            HandshakeError: The source rejected the hello (AccessDeniedError
                for a wrong token or a forbidden id).
            CallTimeoutError, ConnectionClosedError: The first handshake did
                not finish and no retry is left.
        """
        from ._client import MirrorClient

        if self._closed:
            raise ConnectionClosedError(f"peer {self.name} is closed")
        client = MirrorClient(
            self,
            id=id,
            source_id=source_id,
            token=token,
            sync_schema=sync_schema,
            allowed=allowed,
            skipped=skipped,
            shallow=shallow,
            per_mutation=per_mutation,
            handlers=handlers,
            consumer=consumer,
            mirror_id=mirror_id,
        )
        self._clients.append(client)
        if self.connected:
            client._connected()
            client._start_handshake()
        try:
            await client.wait_first_sync()
        except BaseException:
            await client.close("handshake failed")
            raise
        assert client.mirror is not None
        return client.mirror

    def _forget_client(self, client: MirrorClient) -> None:
        if client in self._clients:
            self._clients.remove(client)

    # -- closing -----------------------------------------------------------------------

    async def close(self, reason: str = "closed") -> None:
        """Close the mirrors' sessions and the connection; stop reconnecting."""
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients):
            await client.close(reason)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        conn = self.conn
        if conn is not None:
            await conn.aclose()
        logger.info("peer %s: closed (%s)", self.name, reason)


async def open_peer(
    target: str,
    *,
    sources: Iterable[StateSource | am.Machine] = (),
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    retry: RetryPolicy | None = None,
    options: ConnectionOptions | None = None,
    origin: str | None = None,
    headers: dict[str, str] | None = None,
    name: str = "",
) -> Peer:
    """Connect to another end and return the reconnecting :class:`Peer`.

    Args:
        target: ``host:port`` or ``tcp://host:port`` for TCP, or a ``ws://`` or
            ``wss://`` URL (in Pyodide through the browser's WebSocket).
        sources: Local sources offered to the other end over this connection.
        connect_timeout: Seconds for one connection attempt.
        call_timeout: Seconds a request waits for its reply.
        retry: Connection attempts and backoff.
        options: Connection limits; rpyc's call timeout is ``call_timeout``.
        origin: ``Origin`` header of a WebSocket handshake (CPython only).
        headers: Extra headers of a WebSocket handshake (CPython only).
        name: Used in logs.

    Raises:
        ValueError: The target is not an address or URL.
        Exception: The last connection error once the retries are used up.
    """
    dial = make_dial(
        target,
        connect_timeout=connect_timeout,
        options=options,
        origin=origin,
        headers=headers,
    )
    peer = Peer(
        sources=sources,
        dial=dial,
        retry=retry,
        call_timeout=call_timeout,
        name=name or target,
    )
    await peer.start()
    return peer


def make_dial(
    target: str,
    *,
    connect_timeout: float,
    options: ConnectionOptions | None = None,
    origin: str | None = None,
    headers: dict[str, str] | None = None,
) -> Dial:
    """Return a dial function for a ``host:port`` address or a WebSocket URL.

    Raises:
        ValueError: The target is neither.
    """
    if target.startswith(("ws://", "wss://")):
        if sys.platform == "emscripten":

            async def dial_browser(hub: Hub) -> AsyncConnection:
                from ._transport_pyodide import connect_pyodide_ws

                return await connect_pyodide_ws(
                    target, hub, options=options, connect_timeout=connect_timeout
                )

            return dial_browser

        async def dial_ws(hub: Hub) -> AsyncConnection:
            from ._transport_ws import connect_ws

            return await connect_ws(
                target,
                hub,
                options=options,
                connect_timeout=connect_timeout,
                origin=origin,
                headers=headers,
            )

        return dial_ws

    host, port = parse_address(target)

    async def dial_tcp(hub: Hub) -> AsyncConnection:
        from ._transport_tcp import connect_tcp

        return await connect_tcp(
            host, port, hub, options=options, connect_timeout=connect_timeout
        )

    return dial_tcp


def parse_address(target: str) -> tuple[str, int]:
    """Split ``host:port`` or ``tcp://host:port`` (IPv6 in brackets).

    Raises:
        ValueError: The address has no valid port.
    """
    address = target.removeprefix("tcp://").rstrip("/")
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(
            f"invalid address {target!r}; expected host:port, tcp://host:port or "
            "a ws:// URL"
        )
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port_text)

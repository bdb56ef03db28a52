"""Mirrors: local copies of remote machines, synced by clock diffs.

A :class:`Mirror` is an :class:`asyncmachine.Machine` subclass. Reads, waits,
state contexts and handlers work locally on its copy of the source's clock, which
each diff updates through :meth:`~asyncmachine.Machine.sync_clock`: one
transition per diff, running the final handlers of the changed states. Bound
handlers are therefore "network handlers": they run on synced changes.

Mutations go to the source instead of the local queue. ``mirror.add(...)`` sends
at once and returns a future of the source's result. The reply carries the clock
diff, which is applied when the reply arrives, so after ``await mirror.add("Foo")``
the mirror already shows what the source did. Handlers, which
must not wait, call ``add_ns`` (no reply) or leave the future unawaited.

A subclass keeps ``isinstance(mirror, am.Machine)``, diagrams and shells working.
The price is that the mutation methods return awaitables instead of results, so
code written for local machines must await them (pipes do).

Usage::

    mirror = await connect_mirror("127.0.0.1:7001", id="browser-bar-k3j")
    await mirror.add("Msg", {"msg": "hi"})
    mirror.is_active("Msg")              # True, no push needed
    await mirror.when("Bored")           # resolved by a push
    await mirror.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._driver import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    ConnectionOptions,
)
from ._retry import RetryPolicy
from ._wire import MutationType, Payload

if TYPE_CHECKING:
    from ._client import MirrorClient
    from ._peer import Peer

__all__ = ["Mirror", "connect_mirror"]


class Mirror(am.Machine):
    """A machine whose clock follows a remote source; mutations go to the source.

    Create it with :func:`connect_mirror` or :meth:`Peer.mirror`. Reads (``is_active``,
    ``tick``, ``clock``, ``time``, ``str``, ``string_all``, ``inspect``), waits
    (``when*``, ``state_ctx``) and handlers are local. ``add``, ``remove``,
    ``set``, ``toggle``, ``add_err`` and ``add_err_state`` send the mutation to
    the source and return an :class:`asyncio.Future` of the source's
    :class:`~asyncmachine.Result`; the ``*_ns`` variants send without a reply.
    ``toggle`` decides from the local copy, which may be stale.

    Not available: ``can_add``, ``can_remove``, ``when_args`` (the source's
    handlers and args are not mirrored), and ``import_``.
    """

    def __init__(
        self, schema: Mapping[str, Any], *, client: MirrorClient, **kwargs: Any
    ) -> None:
        # The base constructor may call add_err before the client is set.
        self._client: MirrorClient | None = None
        super().__init__(schema, **kwargs)
        self._client = client

    @property
    def client(self) -> am.Machine:
        """The client part (``rc-<client id>``): connection and handshake states."""
        assert self._client is not None
        return self._client.machine

    @property
    def remote_id(self) -> str:
        """The source machine's id."""
        assert self._client is not None
        return self._client.remote_id

    @property
    def peer(self) -> Peer:
        """The connection end this mirror's session runs on."""
        assert self._client is not None
        return self._client.peer

    def is_partial(self) -> bool:
        """Return whether some source states are not synced (allowed or skipped)."""
        assert self._client is not None
        return self._client.partial

    def __repr__(self) -> str:
        return f"<Mirror {self.id} of {self.remote_id} {self}>"

    # -- mutations, sent to the source -------------------------------------------------

    def add(  # type: ignore[override]
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> asyncio.Future[am.Result]:
        """Add states on the source; return a future of its result.

        Raises:
            StateError: A state is unknown, or not synced to this mirror.
            TypeError: An arg is not JSON-compatible (the error names it).
        """
        return self._mutate(MutationType.ADD, states, args, event)

    def remove(  # type: ignore[override]
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> asyncio.Future[am.Result]:
        """Remove states on the source; return a future of its result."""
        return self._mutate(MutationType.REMOVE, states, args, event)

    def set(  # type: ignore[override]
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> asyncio.Future[am.Result]:
        """Set states on the source; return a future of its result."""
        return self._mutate(MutationType.SET, states, args, event)

    def add_ns(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> None:
        """Add states on the source without waiting for a reply.

        The mirror learns the outcome from the next push. Safe in handlers.
        """
        self._mutate(MutationType.ADD, states, args, event, needs_reply=False)

    def remove_ns(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> None:
        """Remove states on the source without waiting for a reply."""
        self._mutate(MutationType.REMOVE, states, args, event, needs_reply=False)

    def set_ns(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> None:
        """Set states on the source without waiting for a reply."""
        self._mutate(MutationType.SET, states, args, event, needs_reply=False)

    def add_err(  # type: ignore[override]
        self,
        err: BaseException | None,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> asyncio.Future[am.Result]:
        """Store `err` locally and add ``Exception`` on the source.

        Only the error's type name and message travel; the source stores them
        as a :class:`~asyncmachine.rpc.RemoteError` and also adds
        ``ErrOnClient`` when it has that state.
        """
        return self._mutate_err((), err, args, event)

    def add_err_state(  # type: ignore[override]
        self,
        state: str,
        err: BaseException | None,
        args: Mapping[str, Any] | None = None,
        *,
        event: am.Event | None = None,
    ) -> asyncio.Future[am.Result]:
        """Store `err` locally; add `state` and ``Exception`` on the source."""
        return self._mutate_err(self._parse_states(state), err, args, event)

    def _mutate(
        self,
        kind: MutationType,
        states: Any,
        args: Any,
        event: am.Event | None,
        *,
        needs_reply: bool = True,
    ) -> asyncio.Future[am.Result]:
        called = self._parse_states(states)
        parsed = self._parse_args(args)
        client = self._client
        if client is None or self._disposing:
            return _resolved(am.Result.CANCELED)
        return client.mutate(kind, called, parsed, event, needs_reply=needs_reply)

    def _mutate_err(
        self,
        states: tuple[str, ...],
        err: BaseException | None,
        args: Any,
        event: am.Event | None,
    ) -> asyncio.Future[am.Result]:
        if err is not None and not isinstance(err, BaseException):
            raise TypeError(f"err must be an exception or None, got {err!r}")
        client = self._client
        if client is None:
            # Called by the base constructor: keep the error locally.
            if err is not None:
                self._err = err
            return _resolved(am.Result.CANCELED)
        parsed = self._parse_args(args)
        if err is None or isinstance(err, asyncio.CancelledError) or self._disposing:
            return _resolved(am.Result.CANCELED)
        self._err = err
        message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        return client.mutate(MutationType.ADD, states, parsed, event, error=message)

    # -- local-only parts --------------------------------------------------------------

    def can_add(self, states: Any, args: Any = None) -> am.Result:
        """Not available on a mirror: the source's negotiation is not mirrored."""
        raise NotImplementedError(
            f"can_add on mirror {self.id}: negotiation runs on the source "
            f"{self.remote_id}; ask the source itself"
        )

    def can_remove(self, states: Any, args: Any = None) -> am.Result:
        """Not available on a mirror: the source's negotiation is not mirrored."""
        raise NotImplementedError(
            f"can_remove on mirror {self.id}: negotiation runs on the source "
            f"{self.remote_id}; ask the source itself"
        )

    def when_args(self, state: str, args: Mapping[str, Any], ctx: Any = None) -> Any:
        """Not available on a mirror: clock diffs carry no args."""
        raise NotImplementedError(
            f"when_args on mirror {self.id}: clock diffs carry no args; send the "
            "data with a payload or a mutation of a mirror of this side"
        )

    def import_(self, record: Mapping[str, Any]) -> None:
        """Not available: a mirror's clock comes from its source."""
        raise TypeError(
            f"mirror {self.id} takes its clock from source {self.remote_id}; "
            "import into the source instead"
        )

    def bind_handlers(self, handlers: Any, *, prefix: str | None = None) -> str:
        # The base class re-adds the last error for the first handler group; on
        # a mirror that would send the error to the source again.
        err = self._err
        self._err = None
        try:
            return super().bind_handlers(handlers, prefix=prefix)
        finally:
            self._err = err

    def dispose(self) -> None:
        """Dispose the local copy and close its session in the background.

        Unlike a local machine, ``Start`` stays active on the source.
        """
        if self._disposing:
            return
        self._disposing = True
        if not self._processing:
            self._finish_dispose()
        client = self._client
        if client is not None and not client.closed:
            loop = asyncio.get_running_loop()
            task = loop.create_task(client.close("mirror disposed"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- payloads, resync, closing -----------------------------------------------------

    def on_payload(self, fn: Callable[[Payload], Any]) -> None:
        """Call ``fn(payload)`` for each payload the source sends to this mirror.

        It runs while the payload is dispatched, so it must not block.
        """
        assert self._client is not None
        self._client.payload_callbacks.append(fn)

    def when_payload(self, name: str | None = None) -> asyncio.Future[Payload]:
        """Return a future of the next payload (named `name`, if given)."""
        assert self._client is not None
        future: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._client.payload_waiters.append((name, future))
        return future

    async def sync(self) -> None:
        """Fetch the whole clock from the source and apply it, as after a mismatch.

        Raises:
            CallTimeoutError, ConnectionClosedError: The request failed.
        """
        assert self._client is not None
        await self._client.resync()

    async def close(self, reason: str = "closed by the mirror") -> None:
        """Say bye to the source and end the session; the local copy stays readable.

        A mirror from :func:`connect_mirror` also closes its connection.
        """
        client = self._client
        if client is None:
            return
        await client.close(reason)
        if client.owns_peer:
            await client.peer.close(reason)


def _resolved(result: am.Result) -> asyncio.Future[am.Result]:
    future: asyncio.Future[am.Result] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


async def connect_mirror(
    target: str,
    *,
    id: str,
    token: str | None = None,
    source_id: str = "",
    sync_schema: bool = True,
    allowed: Iterable[str] | None = None,
    skipped: Iterable[str] | None = None,
    shallow: bool = False,
    per_mutation: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    retry: RetryPolicy | None = None,
    handlers: Any = None,
    consumer: am.Machine | None = None,
    mirror_id: str | None = None,
    options: ConnectionOptions | None = None,
    origin: str | None = None,
    headers: dict[str, str] | None = None,
) -> Mirror:
    """Connect to a state source and return its mirror, synced.

    The mirror has its own connection, which it redials after a loss (see
    `retry`); closing the mirror closes it. To carry several sessions on one
    connection, use :func:`~asyncmachine.rpc.open_peer` and
    :meth:`Peer.mirror`.

    Args:
        target: ``host:port`` of a TCP source, or the ``ws://`` URL of a
            WebSocket one.
        id: Client id, checked against the source's allowed ids; the mirror's
            machine id is ``rnm-<id>`` and the client part's ``rc-<id>``.
        token: The source's token, if it has one.
        source_id: Which source, when the other end offers several.
        sync_schema: Receive the schema (relations), so that ``inspect`` and
            diagrams show it. Without it the mirror contains only the synced
            states, in the source's order, without relations.
        allowed: Sync only these states (others read inactive).
        skipped: Do not sync these states.
        shallow: Sync only whether states are active: ticks become local flip
            counters, with the right parity but not the source's values.
        per_mutation: Receive one diff per source transition instead of one
            merged diff per push, so handlers see every activation (Multi
            re-activations and short-lived states included). Disables shallow.
        connect_timeout: Seconds for one connection attempt.
        call_timeout: Seconds a request waits for its reply.
        retry: Reconnect attempts, mutation resends and their backoff.
        handlers: Handler object(s) bound before the first sync, so they also
            run for the states active at connection time.
        consumer: A local machine with a ``ServerPayload`` state that gets each
            payload as a mutation with the args ``name``, ``data``, ``payload``.
        mirror_id: Machine id of the mirror instead of ``rnm-<id>``.
        options: Connection limits.
        origin: ``Origin`` header of a WebSocket handshake.
        headers: Extra headers of a WebSocket handshake.

    Raises:
        AccessDeniedError: Wrong token or a client id the source does not allow.
        HandshakeError: The source rejected the hello for another reason.
        Exception: The last connection error once the retries are used up.
    """
    from ._peer import Peer, make_dial

    dial = make_dial(
        target,
        connect_timeout=connect_timeout,
        options=options,
        origin=origin,
        headers=headers,
    )
    peer = Peer(dial=dial, retry=retry, call_timeout=call_timeout, name=id)
    await peer.start()
    try:
        mirror = await peer.mirror(
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
    except BaseException:
        await peer.close("the first handshake failed")
        raise
    assert mirror._client is not None
    mirror._client.owns_peer = True
    return mirror

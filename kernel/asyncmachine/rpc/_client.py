"""The client part of a mirror session: handshake, clock diffs, mutations.

A :class:`MirrorClient` speaks the sync protocol for one :class:`Mirror` over its
peer's connection. It sends the hello and the handshake, and builds the mirror
from the hello reply. It applies each clock diff after checking its checksum, and
a mismatch requests the whole clock. Each mutation carries an id, so the source
applies a resent mutation only once. Mutations wait in an ordered outbox until
their reply arrives, and are resent in order after a reconnection.

Replies are handled when rpyc dispatches them, in order with the pushes of the
same connection, so a reply's diff is applied before any later push.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._driver import CallTimeoutError, ConnectionClosedError
from ._errors import (
    AccessDeniedError,
    HandshakeError,
    RemoteMutationError,
    RpcError,
)
from ._mirror import Mirror
from ._source import schema_hash
from ._states import CLIENT_SCHEMA, ClientStates
from ._wire import (
    Ack,
    Bye,
    ErrorMessage,
    Handshake,
    Hello,
    HelloReply,
    Message,
    Mutate,
    MutateReply,
    MutationEvent,
    MutationType,
    MutationUpdate,
    Payload,
    SchemaChange,
    SetClock,
    SetClockMany,
    Sync,
    SyncReply,
    WireError,
    clock_checksum,
    decode,
)
from ._wire_binary import BINARY_TAGS, decode_binary, encode_binary, encode_mutate

if TYPE_CHECKING:
    from ._hub import Hub
    from ._peer import Peer

__all__ = ["MirrorClient"]

logger = logging.getLogger("asyncmachine.rpc")


class _Pending:
    """A mutation waiting for its reply: resent after a lost connection."""

    __slots__ = (
        "mutation_id",
        "data",
        "future",
        "needs_reply",
        "hub",
        "timeouts",
        "kind",
        "states",
    )

    def __init__(
        self,
        mutation_id: str,
        data: bytes,
        future: asyncio.Future[am.Result],
        needs_reply: bool,
        kind: MutationType,
        states: tuple[str, ...],
    ) -> None:
        self.mutation_id = mutation_id
        self.data = data
        self.future = future
        self.needs_reply = needs_reply
        # The connection's hub it was last sent on.
        self.hub: Hub | None = None
        self.timeouts = 0
        self.kind = kind
        self.states = states

    @property
    def description(self) -> str:
        """The mutation for logs, e.g. ``add Foo Bar (id 3f2a9c1e-17)``."""
        states = " ".join(self.states)
        return f"{self.kind.name.lower()} {states} (id {self.mutation_id})"

    def log_failure(self, future: asyncio.Future[Any]) -> None:
        """Log a failure, so that a future no caller awaits does not warn at exit."""
        if future.cancelled():
            return
        err = future.exception()
        if err is not None:
            logger.debug("%s failed: %r", self.description, err)


class MirrorClient:
    """The client part of one mirror session: handshake, diffs, mutations.

    Its machine ``rc-<client id>`` has the reference client's schema (see
    :class:`~asyncmachine.rpc.ClientStates`). Created by :meth:`Peer.mirror`.
    """

    def __init__(
        self,
        peer: Peer,
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
    ) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"id must be a non-empty str, got {id!r}")

        # Options of the session, sent in every hello.
        self.peer = peer
        self.id = id
        self.source_id = source_id
        self.token = token
        self.sync_schema = sync_schema
        self.allowed = None if allowed is None else tuple(allowed)
        self.skipped = None if skipped is None else tuple(skipped)
        self.shallow = shallow
        self.per_mutation = per_mutation
        self.partial = bool(self.skipped) or self.allowed is not None
        self.call_timeout = peer.call_timeout
        self.retry = peer.retry

        self.owns_peer = False
        self.closed = False
        self.remote_id = ""
        self.mirror: Mirror | None = None
        self.payload_callbacks: list[Callable[[Payload], Any]] = []
        self.payload_waiters: list[tuple[str | None, asyncio.Future[Payload]]] = []
        self._mirror_id = mirror_id or f"rnm-{id}"
        self._handlers = handlers
        self._consumer = consumer

        self.machine = am.Machine(
            CLIENT_SCHEMA,
            id=f"rc-{id}",
            state_order=ClientStates.names(),
            tags=("rpc-client",),
        )
        self.machine.add(ClientStates.Start)

        # The current connection's hub, and this session's key on it.
        self._hub: Hub | None = None
        self.key = ""
        self._ready = False
        self._resyncing = False
        self._handshake_task: asyncio.Task[None] | None = None
        self._first_sync: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )

        # The synced clock in the source's index order for this session.
        self._names: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._time: tuple[int, ...] | list[int] = ()
        self._queue_tick = 0
        self._machine_tick = 0
        self._schema: dict[str, dict[str, Any]] | None = None
        self._schema_hash = ""

        # Mutations waiting for their reply, in the order they were made.
        self._outbox: dict[str, _Pending] = {}
        # Set when the session ended for good; later mutations fail with it.
        self._failure: BaseException | None = None
        self._epoch = secrets.token_hex(4)
        self._mutation_numbers = itertools.count(1)

    def describe(self) -> str:
        """Return the client id, source and session, for logs."""
        hub = self._hub
        where = hub.describe(self.key) if hub is not None else "no session"
        source = self.remote_id or self.source_id or "?"
        return f"mirror {self._mirror_id} of {source} ({where})"

    # -- connection events from the peer -----------------------------------------------

    def _connecting(self) -> None:
        if not self.closed:
            self.machine.add(ClientStates.Connecting)

    def _retrying(self) -> None:
        if not self.closed:
            self.machine.add(ClientStates.RetryingConn)

    def _connect_failed(self, err: BaseException) -> None:
        if not self.closed:
            self.machine.add_err_state(ClientStates.ErrConnecting, err)

    def _connected(self) -> None:
        if self.closed:
            return
        self.machine.remove(ClientStates.RetryingConn)
        self.machine.add(ClientStates.Connected)

    def _connection_lost(
        self, reason: str, *, final: bool, expected: bool = False
    ) -> None:
        if self.closed:
            return
        self._ready = False
        self._resyncing = False
        if self._hub is not None:
            self._hub.forget_mirror(self.key, self)
        err = ConnectionClosedError(reason)
        logger.log(
            logging.INFO if expected else logging.WARNING,
            "%s: disconnected: %s",
            self.describe(),
            reason,
        )
        self.machine.add_err_state(ClientStates.ErrNetwork, err)
        self.machine.remove(ClientStates.Connected)
        if final:
            self._give_up(err)

    def _give_up(self, err: BaseException) -> None:
        """Stop for good: fail the waiting mutations and the first sync."""
        self._ready = False
        self._failure = err
        if not self.closed:
            self.machine.add(ClientStates.ConnRetryFailed)
        if not self._first_sync.done():
            self._first_sync.set_exception(err)
        self._fail_outbox(err)

    def _fail_outbox(self, err: BaseException) -> None:
        pending = list(self._outbox.values())
        self._outbox.clear()
        for item in pending:
            if not item.future.done():
                item.future.set_exception(err)

    # -- handshake ---------------------------------------------------------------------

    def _start_handshake(self) -> None:
        if self.closed:
            return
        task = self._handshake_task
        if task is not None and not task.done():
            if self._hub is self.peer.hub:
                return
            # Still running on a connection that is gone: start over.
            task.cancel()
        self._handshake_task = asyncio.get_running_loop().create_task(
            self._handshake(), name=f"rpc-handshake-{self.id}"
        )

    async def wait_first_sync(self) -> None:
        """Wait until the first handshake synced the mirror, or raise its error."""
        await asyncio.shield(self._first_sync)

    async def _handshake(self) -> None:
        peer = self.peer
        hub = peer.hub
        if hub is None or hub.conn is None or hub.conn.closed:
            return

        if self._hub is not None and self._hub is not hub:
            self._hub.forget_mirror(self.key, self)
        self._hub = hub
        self.key = hub.new_key()
        hub.register_mirror(self.key, self)
        self.machine.add(ClientStates.Handshaking)

        hello = Hello(
            self.id,
            sync_schema=self.sync_schema,
            schema_hash=self._schema_hash,
            allowed_states=self.allowed,
            skipped_states=self.skipped,
            shallow_clocks=self.shallow,
            sync_mutations=self.per_mutation,
            token=self.token or "",
            source_id=self.source_id,
        )
        try:
            # A connection accepted by this end has not fetched the root yet.
            await hub.conn.get_root(timeout=self.call_timeout)
            await hub.request(
                self.key, hello.encode(), self._on_hello_reply, self.call_timeout
            )
            await hub.request(
                self.key, Handshake().encode(), _expect_ack, self.call_timeout
            )
        except (CallTimeoutError, ConnectionClosedError) as err:
            self._handshake_interrupted(hub, err)
            return
        except Exception as err:
            self._handshake_rejected(hub, err)
            return
        if hub is not peer.hub or self.closed:
            return

        peer._handshake_done()
        self.machine.add(ClientStates.HandshakeDone)
        # Error states of earlier connections end with a successful handshake.
        self.machine.remove(am.EXCEPTION)
        self._ready = True
        logger.info("%s: synced", self.describe())
        if not self._first_sync.done():
            self._first_sync.set_result(None)
        self._flush_outbox()

    def _handshake_interrupted(self, hub: Hub, err: BaseException) -> None:
        """Record a timeout or a lost connection; the peer retries or gives up."""
        logger.warning("%s: handshake failed: %r", self.describe(), err)
        if isinstance(err, CallTimeoutError):
            self.machine.add_err_state(ClientStates.ErrNetworkTimeout, err)
        else:
            self.machine.add_err_state(ClientStates.ErrNetwork, err)
        if self.peer._dial is None:
            self._give_up(err)
        else:
            self.peer._handshake_failed(hub, self, err)

    def _handshake_rejected(self, hub: Hub, err: BaseException) -> None:
        """End the session for good: a retry would get the same rejection."""
        logger.error("%s: handshake failed for good: %s", self.describe(), err)
        self.machine.add_err_state(ClientStates.ErrRpc, err)
        self._give_up(err)
        self.closed = True
        hub.forget_mirror(self.key, self)
        self.peer._forget_client(self)

    def _on_hello_reply(self, is_error: bool, value: Any) -> None:
        message = _decode_reply(is_error, value, "hello")
        if isinstance(message, ErrorMessage):
            error_class = (
                AccessDeniedError if message.code == "no_access" else HandshakeError
            )
            raise error_class(message.code, message.message)
        if not isinstance(message, HelloReply):
            raise RpcError(f"expected a hello_reply, got {type(message).__name__}")
        self._apply_export(message)

    def _apply_export(self, export: HelloReply | SchemaChange) -> None:
        """Take the source's names, clock and schema; apply them as one sync."""
        names = export.state_names
        if export.schema is not None:
            self._schema = export.schema
            self._schema_hash = schema_hash(
                {
                    name: am.State.from_dict(state)
                    for name, state in export.schema.items()
                }
            )
        if self.sync_schema and self._schema is None:
            raise RpcError(f"source {export.machine_id} sent no schema")

        schema = self._local_schema(names)
        order = list(names) if am.EXCEPTION in names else [*names, am.EXCEPTION]
        self.remote_id = export.machine_id
        mirror = self.mirror
        if mirror is None:
            mirror = self.mirror = Mirror(
                schema,
                client=self,
                id=self._mirror_id,
                state_order=order,
                strict=False,
                handlers=self._handlers,
                tags=("rpc-netmach", f"src-id:{export.machine_id}"),
            )
        elif tuple(names) != self._names:
            try:
                mirror.set_schema(schema, order)
            except (am.SchemaError, RuntimeError) as err:
                raise RpcError(
                    f"the source's states changed from {list(self._names)} to "
                    f"{list(names)}, which this mirror cannot follow: {err}"
                ) from err

        self._names = tuple(names)
        self._index = {name: i for i, name in enumerate(names)}
        self._time = export.time
        self._queue_tick = export.queue_tick
        self._machine_tick = export.machine_tick
        # One transition, also after a reconnection: handlers see the net change.
        mirror.sync_clock(
            dict(zip(names, export.time, strict=True)),
            queue_tick=export.queue_tick,
            machine_tick=export.machine_tick,
        )

    def _local_schema(self, names: Iterable[str]) -> dict[str, am.State]:
        wire_schema = self._schema if self.sync_schema else None
        if wire_schema is None:
            return {name: am.State() for name in names}
        return {name: am.State.from_dict(wire_schema.get(name, {})) for name in names}

    # -- pushes and replies (inside rpyc's dispatch) -----------------------------------

    def on_push(self, message: Message) -> bytes | None:
        """Apply one message the source pushed; return the reply, if any."""
        if self.closed or self.mirror is None:
            return None
        if isinstance(message, SetClock):
            self._apply_clock(message)
            return None
        if isinstance(message, SetClockMany):
            self._apply_updates(message.mutations)
            return None
        if isinstance(message, Payload):
            return self._deliver_payload(message)
        if isinstance(message, SchemaChange):
            try:
                self._apply_export(message)
            except RpcError as err:
                logger.error("%s: %s", self.describe(), err)
                self.machine.add_err_state(ClientStates.ErrRpc, err)
            return None
        if isinstance(message, Bye):
            logger.info(
                "%s: the source sent a bye: %s",
                self.describe(),
                message.reason or "no reason given",
            )
            return None
        self.on_invalid_push(
            WireError("type", message.TYPE.name.lower(), "not a push a mirror handles")
        )
        return None

    def on_invalid_push(self, err: WireError) -> None:
        """Record an undecodable push and resync, since a diff may be lost."""
        logger.error("%s: invalid push from the source: %s", self.describe(), err)
        self.machine.add_err_state(ClientStates.ErrRpc, RpcError(str(err)))
        self._request_resync()

    def _apply_clock(self, clock: SetClock) -> bool:
        """Apply one diff after checking its checksum; resync on a mismatch."""
        if self._resyncing or self.mirror is None:
            return False
        try:
            time, queue_tick, machine_tick = clock.apply_to(
                self._time, self._queue_tick, self._machine_tick
            )
        except WireError as err:
            self.on_invalid_push(err)
            return False
        if clock_checksum(time, queue_tick, machine_tick) != clock.checksum:
            logger.warning(
                "%s: clock checksum mismatch, requesting a full resync",
                self.describe(),
            )
            self._request_resync()
            return False
        names = self._names
        self._time = time
        self._queue_tick = queue_tick
        self._machine_tick = machine_tick
        self.mirror.sync_clock(
            {names[i]: time[i] for i in clock.idxs},
            queue_tick=queue_tick,
            machine_tick=machine_tick,
        )
        return True

    def _apply_updates(self, updates: Iterable[MutationUpdate]) -> None:
        """Apply per-mutation diffs one by one, one transition each."""
        for update in updates:
            if not self._apply_clock(update.clock):
                return

    def _deliver_payload(self, payload: Payload) -> bytes:
        args = {"name": payload.name, "data": payload.data, "payload": payload}
        self.machine.add(ClientStates.ServerPayload, args)
        for callback in list(self.payload_callbacks):
            try:
                callback(payload)
            except Exception:
                logger.exception(
                    "%s: payload callback %r failed", self.describe(), callback
                )
        waiters = self.payload_waiters
        self.payload_waiters = []
        for name, future in waiters:
            if future.done():
                continue
            if name is None or name == payload.name:
                future.set_result(payload)
            else:
                self.payload_waiters.append((name, future))
        consumer = self._consumer
        if consumer is not None:
            consumer.add("ServerPayload", args)
        return Ack().encode()

    # -- resync ------------------------------------------------------------------------

    def _request_resync(self) -> None:
        # The session exists from the hello reply on, so a push that arrives
        # before the handshake's reply is handled can ask for a resync too.
        if self._resyncing or self.closed or self._hub is None or self.mirror is None:
            return
        self._resyncing = True
        self.machine.add(ClientStates.MetricSync)
        future = self._hub.request(
            self.key, Sync().encode(), self._on_sync_reply, self.call_timeout
        )
        future.add_done_callback(self._on_resync_done)

    def _on_sync_reply(self, is_error: bool, value: Any) -> None:
        message = _decode_reply(is_error, value, "sync")
        if not isinstance(message, SyncReply):
            raise RpcError(f"expected a sync_reply, got {type(message).__name__}")
        if len(message.time) != len(self._names):
            raise RpcError(
                f"sync_reply has {len(message.time)} ticks for "
                f"{len(self._names)} states"
            )
        self._resyncing = False
        self._time = message.time
        self._queue_tick = message.queue_tick
        self._machine_tick = message.machine_tick
        assert self.mirror is not None
        self.mirror.sync_clock(
            dict(zip(self._names, message.time, strict=True)),
            queue_tick=message.queue_tick,
            machine_tick=message.machine_tick,
        )

    def _on_resync_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._resyncing = False
            return
        err = future.exception()
        if err is None:
            return
        self._resyncing = False
        logger.warning("%s: full resync failed: %r", self.describe(), err)
        if isinstance(err, RpcError):
            self.machine.add_err_state(ClientStates.ErrRpc, err)

    async def resync(self) -> None:
        """Fetch and apply the whole clock now."""
        if self._hub is None or not self._ready:
            raise ConnectionClosedError(f"{self.describe()} is not connected")
        self._resyncing = True
        self.machine.add(ClientStates.MetricSync)
        future = self._hub.request(
            self.key, Sync().encode(), self._on_sync_reply, self.call_timeout
        )
        future.add_done_callback(self._on_resync_done)
        await future

    # -- mutations ---------------------------------------------------------------------

    def mutate(
        self,
        kind: MutationType,
        states: tuple[str, ...],
        args: dict[str, Any] | None,
        event: am.Event | None,
        *,
        needs_reply: bool = True,
        error: str | None = None,
    ) -> asyncio.Future[am.Result]:
        """Send a mutation to the source; return a future of its result.

        Raises:
            StateError: A state is not synced to this mirror.
            TypeError: An arg is not JSON-compatible.
        """
        index = self._index
        try:
            idxs = tuple(index[state] for state in states)
        except KeyError as err:
            raise am.StateError(
                f"state {err.args[0]!r} of mirror {self._mirror_id} is not synced "
                f"from source {self.remote_id}; synced states: {list(self._names)}"
            ) from None
        wire_event = None
        if event is not None:
            wire_event = MutationEvent(
                event.name, event.machine.id, event.transition.id
            )
        mutation_id = f"{self._epoch}-{next(self._mutation_numbers)}"
        try:
            if args is None and wire_event is None and error is None:
                # Nothing to check: the indexes and the id are this mirror's own.
                data = encode_mutate(kind, idxs, needs_reply, mutation_id)
            else:
                message = Mutate(
                    kind, idxs, args, wire_event, needs_reply, mutation_id, error
                )
                data = encode_binary(message)
        except WireError as err:
            raise TypeError(
                f"cannot send {kind.name.lower()} {list(states)} from mirror "
                f"{self._mirror_id}: {err}; args must be JSON-compatible"
            ) from err
        future: asyncio.Future[am.Result] = asyncio.get_running_loop().create_future()
        pending = _Pending(mutation_id, data, future, needs_reply, kind, states)
        future.add_done_callback(pending.log_failure)
        if self.closed:
            future.set_exception(ConnectionClosedError(f"{self.describe()} is closed"))
            return future
        if self._failure is not None:
            future.set_exception(self._failure)
            return future
        if not needs_reply:
            self._notify(pending)
            return future
        self._outbox[mutation_id] = pending
        if self._ready:
            self._send(pending)
        return future

    def _notify(self, pending: _Pending) -> None:
        if not self._ready or self._hub is None:
            # NOTE: a mutation without a reply waits for the next handshake but is
            # not resent after that: whether it arrived is unknown.
            self._outbox[pending.mutation_id] = pending
            return
        try:
            self._hub.notify(self.key, pending.data)
        except ConnectionClosedError as err:
            logger.warning(
                "%s: %s not sent: %r", self.describe(), pending.description, err
            )
            pending.future.set_exception(err)
            return
        pending.future.set_result(am.Result.EXECUTED)

    def _send(self, pending: _Pending) -> None:
        hub = self._hub
        assert hub is not None
        pending.hub = hub
        if not pending.needs_reply:
            self._outbox.pop(pending.mutation_id, None)
            self._notify(pending)
            return
        hub.send_request(
            self.key,
            pending.data,
            functools.partial(self._on_mutate_reply, pending),
            functools.partial(self._on_mutate_failed, pending),
            self.call_timeout,
        )

    def _flush_outbox(self) -> None:
        """Send, in order, every mutation not sent on the current connection."""
        hub = self._hub
        for pending in list(self._outbox.values()):
            if pending.hub is not hub and not pending.future.done():
                self._send(pending)

    def _on_mutate_reply(self, pending: _Pending, is_error: bool, value: Any) -> None:
        """Apply a mutation's reply when it is dispatched, then resolve its future.

        A reply to an earlier attempt of a resent mutation is applied too: its
        diff is part of the stream of diffs.
        """
        try:
            message = _decode_reply(is_error, value, "mutate")
            if isinstance(message, ErrorMessage):
                raise RemoteMutationError(message.code, message.message)
            if not isinstance(message, MutateReply):
                raise RpcError(f"expected a mutate_reply, got {type(message).__name__}")
        except (RpcError, RemoteMutationError) as err:
            self._on_mutate_failed(pending, err)
            return
        if message.clock is not None:
            self._apply_clock(message.clock)
        elif message.mutations is not None:
            self._apply_updates(message.mutations)
        if not pending.future.done():
            self._outbox.pop(pending.mutation_id, None)
            pending.future.set_result(am.Result(message.result))

    def _on_mutate_failed(self, pending: _Pending, err: BaseException) -> None:
        """Resend after a timeout, keep for the next connection, or fail."""
        if pending.future.done():
            self._outbox.pop(pending.mutation_id, None)
            return
        if isinstance(err, ConnectionClosedError):
            # Stays in the outbox: resent after the next handshake.
            return
        if isinstance(err, CallTimeoutError):
            pending.timeouts += 1
            self.machine.add_err_state(ClientStates.ErrNetworkTimeout, err)
            if pending.timeouts <= self.retry.attempts and not self.closed:
                logger.warning(
                    "%s: %s got no reply, resending (%d)",
                    self.describe(),
                    pending.description,
                    pending.timeouts,
                )
                self.machine.add(ClientStates.RetryingCall)
                asyncio.get_running_loop().call_later(
                    self.retry.delay(pending.timeouts), self._resend, pending
                )
                return
            self.machine.add(ClientStates.CallRetryFailed)
        elif isinstance(err, RpcError):
            self.machine.add_err_state(ClientStates.ErrRpc, err)
        logger.warning("%s: %s failed: %r", self.describe(), pending.description, err)
        self._outbox.pop(pending.mutation_id, None)
        pending.future.set_exception(err)

    def _resend(self, pending: _Pending) -> None:
        if pending.future.done() or pending.mutation_id not in self._outbox:
            return
        self.machine.remove(ClientStates.RetryingCall)
        if self._ready:
            self._send(pending)
        # Otherwise the next handshake sends it.

    # -- closing -----------------------------------------------------------------------

    async def close(self, reason: str) -> None:
        """Say bye to the source and end the session."""
        if self.closed:
            return
        self.closed = True
        hub = self._hub
        if self._handshake_task is not None and not self._handshake_task.done():
            self._handshake_task.cancel()
        if hub is not None and self._ready:
            try:
                hub.notify(self.key, Bye(reason[:200]).encode())
            except ConnectionClosedError:
                pass
        self._ready = False
        if hub is not None:
            hub.forget_mirror(self.key, self)
        self.peer._forget_client(self)
        err = ConnectionClosedError(f"{self.describe()} closed: {reason}")
        if not self._first_sync.done():
            self._first_sync.set_exception(err)
            self._first_sync.exception()
        self._fail_outbox(err)
        self.machine.add(ClientStates.Disconnecting)
        self.machine.remove(ClientStates.Start)
        self.machine.add(ClientStates.Disconnected)
        logger.info("%s: closed (%s)", self.describe(), reason)


def _decode_reply(is_error: bool, value: Any, request: str) -> Message:
    if is_error:
        raise RpcError(f"the source failed to handle the {request} request: {value!r}")
    if type(value) is not bytes:
        raise RpcError(f"{request} reply is a {type(value).__name__}, expected bytes")
    try:
        if value[:1] in BINARY_TAGS:
            return decode_binary(value)
        return decode(value)
    except WireError as err:
        raise RpcError(f"invalid {request} reply: {err}") from err


def _expect_ack(is_error: bool, value: Any) -> None:
    message = _decode_reply(is_error, value, "handshake")
    if isinstance(message, ErrorMessage):
        raise HandshakeError(message.code, message.message)
    if not isinstance(message, Ack):
        raise RpcError(f"expected an ack, got {type(message).__name__}")

"""One mirror's session with a state source: its options, views and pushes.

The session keeps the client's view of the source's clock: the tracked states in
the client's index order, untracked ones read 0, and in shallow mode flip
counters instead of ticks. Each export (a push or a mutation reply) takes the
diff against the last view sent and records the new one under the source's lock.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._states import SERVER_SCHEMA, ServerStates
from ._wire import (
    Ack,
    ArgsNames,
    ArgsNamesReply,
    Bye,
    ErrorMessage,
    Handshake,
    Hello,
    HelloReply,
    Message,
    Mutate,
    MutateReply,
    MutationType,
    MutationUpdate,
    SchemaChange,
    SetClock,
    SetClockMany,
    Sync,
    SyncReply,
    WireError,
)
from ._wire_binary import encode_mutate_reply

if TYPE_CHECKING:
    from ._hub import Hub
    from ._peer import Peer
    from ._source import StateSource

__all__ = ["SourceSession"]

logger = logging.getLogger("asyncmachine.rpc")

_CORE_KINDS = {
    am.MutationType.ADD: MutationType.ADD,
    am.MutationType.REMOVE: MutationType.REMOVE,
    am.MutationType.SET: MutationType.SET,
}


class SourceSession:
    """One mirror's session with a source: its options, views and machine.

    Created by :meth:`StateSource.open_session` from the mirror's hello. Its
    machine ``rs-<source id>-<n>`` has the reference server's schema (see
    :class:`~asyncmachine.rpc.ServerStates`).
    """

    def __init__(
        self, source: StateSource, hub: Hub, key: str, hello: Hello, number: int
    ) -> None:
        self.source = source
        self.hub = hub
        self.key = key
        self.client_id = hello.machine_id
        self.sync_schema = hello.sync_schema
        self.per_mutation = hello.sync_mutations
        # Per-mutation updates carry real ticks, as in the reference.
        self.shallow = hello.shallow_clocks and not hello.sync_mutations
        self.pushing = False
        self.closed = False
        self.machine = am.Machine(
            SERVER_SCHEMA,
            id=f"rs-{source.id}-{number}",
            state_order=ServerStates.names(),
            tags=("rpc-server", f"client-id:{self.client_id}"),
        )
        self.machine.add(ServerStates.Start)
        self.machine.add(ServerStates.RpcReady)
        self.machine.add(ServerStates.ClientConnected)

        self._allowed = (
            None if hello.allowed_states is None else frozenset(hello.allowed_states)
        )
        self._skipped = frozenset(hello.skipped_states or ())
        self.names: tuple[str, ...] = ()
        self.partial = False
        self._tracked: list[int] = []
        self._wire_index: dict[str, int] = {}
        self._compute_tracking()
        # The client's view as last exported, and the queue and machine ticks.
        self._view: list[int] = []
        self._queue_tick = 0
        self._machine_tick = 0
        # The next export must send the whole clock (ticks went down).
        self._needs_full = False
        # The source's transition count at the last export.
        self._exported = -1
        self._pending: list[MutationUpdate] = []
        self._sent_schema_hash = hello.schema_hash

    @property
    def peer(self) -> Peer:
        """The peer of the connection that carries this session."""
        return self.hub.peer

    def _compute_tracking(self) -> None:
        """Derive the tracked states and the client's index order from the options.

        With the schema synced, the client sees every state in source order and
        untracked ones read 0; without it, only tracked states, in source order.
        """
        names = self.source.machine.state_names()
        allowed = self._allowed
        skipped = self._skipped
        # Positions in the source's clock of the tracked states.
        self._tracked = [
            i
            for i, name in enumerate(names)
            if (allowed is None or name in allowed) and name not in skipped
        ]
        self.partial = len(self._tracked) != len(names)
        if self.sync_schema:
            self.names = names
            self._wire_index = {names[i]: i for i in self._tracked}
        else:
            self.names = tuple(names[i] for i in self._tracked)
            self._wire_index = {name: i for i, name in enumerate(self.names)}

    def describe(self) -> str:
        """Return the session's machine id, client id and connection, for logs."""
        where = self.hub.describe(self.key)
        return f"{self.machine.id} (client {self.client_id!r}, {where})"

    def __repr__(self) -> str:
        return f"<SourceSession {self.describe()}>"

    # -- views (callers hold the source's lock) ----------------------------------------

    def _current_view(self, time: list[int], previous: list[int] | None) -> list[int]:
        """Return the client's view of a source clock.

        Untracked states read 0. In shallow mode each tracked tick is a flip
        counter: the previous view's value plus one when the parity changed.
        """
        if not self.partial and not self.shallow:
            return time
        if self.sync_schema:
            view = [0] * len(time)
            for i in self._tracked:
                view[i] = time[i]
        else:
            view = [time[i] for i in self._tracked]
        if self.shallow:
            positions = self._tracked if self.sync_schema else range(len(view))
            for position in positions:
                old = 0 if previous is None else previous[position]
                if view[position] % 2 != old % 2:
                    view[position] = old + 1
                else:
                    view[position] = old
        return view

    def _start(self, hello: Hello) -> HelloReply:
        mach = self.source.machine
        self._view = self._current_view(mach.time(), None)
        self._queue_tick = mach.queue_tick()
        self._machine_tick = mach.machine_tick()
        schema = None
        if self.sync_schema and hello.schema_hash != self.source._schema_hash:
            schema = {name: state.to_dict() for name, state in mach.schema().items()}
            self._sent_schema_hash = self.source._schema_hash
        self.machine.add(ServerStates.Handshaking)
        return HelloReply(
            machine_id=mach.id,
            state_names=self.names,
            time=tuple(self._view),
            queue_tick=self._queue_tick,
            machine_tick=self._machine_tick,
            states_count=len(mach.state_names()),
            schema=schema,
        )

    def _record_transition(self, tx: am.Transition) -> None:
        """Queue the diff of one source transition (per-mutation mode)."""
        if self._needs_full:
            return

        mach = self.source.machine
        view = self._current_view(tx.time_after, self._view)
        queue_tick = mach.queue_tick()
        machine_tick = mach.machine_tick()
        if (
            view == self._view
            and queue_tick == self._queue_tick
            and machine_tick == self._machine_tick
        ):
            return

        try:
            clock = SetClock.between(
                self._view,
                view,
                (self._queue_tick, queue_tick),
                (self._machine_tick, machine_tick),
            )
        except ValueError:
            # Ticks went down (an import): the next export resends everything.
            self._needs_full = True
            return

        kind = _CORE_KINDS.get(tx.mutation.type, MutationType.SET)
        index = self._wire_index
        called = tuple(index[name] for name in tx.called_states() if name in index)
        self._pending.append(MutationUpdate(kind, called, clock))

        self._view = list(view)
        self._queue_tick = queue_tick
        self._machine_tick = machine_tick

    def _take_update(
        self,
    ) -> SetClock | tuple[MutationUpdate, ...] | SchemaChange | None:
        """Return the changes since the last export and record them as sent.

        Returns None when nothing changed, and a :class:`SchemaChange` carrying
        the whole clock when ticks went down (after an import), which a diff
        cannot express.
        """
        mach = self.source.machine
        with self.source._lock:
            self._exported = self.source._generation
            time = mach.time()
            queue_tick = mach.queue_tick()
            machine_tick = mach.machine_tick()
            if self._needs_full:
                return self._export_change(full_schema=False)
            view = self._current_view(time, self._view)
            updates = self._pending
            self._pending = []
            if (
                view != self._view
                or queue_tick != self._queue_tick
                or machine_tick != self._machine_tick
            ):
                try:
                    clock = SetClock.between(
                        self._view,
                        view,
                        (self._queue_tick, queue_tick),
                        (self._machine_tick, machine_tick),
                    )
                except ValueError:
                    return self._export_change(full_schema=False)
                # _current_view returns a new list (mach.time() makes one).
                self._view = view
                self._queue_tick = queue_tick
                self._machine_tick = machine_tick
                if not self.per_mutation:
                    return clock
                updates.append(MutationUpdate(MutationType.SET, (), clock))
            if self.per_mutation and updates:
                return tuple(updates)
            return None

    def _export_change(self, *, full_schema: bool) -> SchemaChange:
        mach = self.source.machine
        self._needs_full = False
        self._view = self._current_view(mach.time(), None)
        self._queue_tick = mach.queue_tick()
        self._machine_tick = mach.machine_tick()
        self._pending = []
        schema = None
        if self.sync_schema and (
            full_schema or self._sent_schema_hash != self.source._schema_hash
        ):
            schema = {name: state.to_dict() for name, state in mach.schema().items()}
            self._sent_schema_hash = self.source._schema_hash
        return SchemaChange(
            machine_id=mach.id,
            state_names=self.names,
            time=tuple(self._view),
            queue_tick=self._queue_tick,
            machine_tick=self._machine_tick,
            states_count=len(mach.state_names()),
            schema=schema,
        )

    # -- requests from the mirror (inside rpyc's dispatch) -----------------------------

    def handle(self, message: Message) -> bytes | None:
        """Handle one request of the mirror; return the encoded reply.

        Returns None for requests that get no reply (notifications).
        """
        if isinstance(message, Mutate):
            return self._handle_mutate(message)
        if isinstance(message, Handshake):
            return self._handle_handshake()
        if isinstance(message, Sync):
            return self._handle_sync()
        if isinstance(message, Bye):
            logger.info(
                "source %s: %s sent a bye: %s",
                self.source.id,
                self.describe(),
                message.reason or "no reason given",
            )
            self.close("")
            return Ack().encode()
        if isinstance(message, ArgsNames):
            return ArgsNamesReply(()).encode()
        if isinstance(message, Hello):
            return ErrorMessage(
                "invalid_request", f"session {self.key!r} already sent a hello"
            ).encode()
        raise WireError(
            "type", message.TYPE.name.lower(), "not a request a source handles"
        )

    def _handle_handshake(self) -> bytes:
        self.machine.add(ServerStates.HandshakeDone)
        self.pushing = True
        # Pushes what changed since the hello reply.
        self.source._schedule_flush()
        return Ack().encode()

    def _handle_mutate(self, message: Mutate) -> bytes | None:
        names = self.names
        try:
            called = [names[i] for i in message.idxs]
        except IndexError:
            return ErrorMessage(
                "invalid_states",
                f"state indexes {list(message.idxs)} outside the {len(names)} "
                f"states of source {self.source.id}",
            ).encode()
        try:
            result = self.source._apply_mutation(self, message, called)
        except Exception as err:
            logger.error(
                "source %s: mutation %s %s of %s failed: %r",
                self.source.id,
                message.kind.name.lower(),
                called,
                self.describe(),
                err,
                extra={"mach_id": self.source.id},
            )
            if not message.needs_reply:
                return None
            return ErrorMessage(
                "mutation_failed", f"{type(err).__name__}: {err}"
            ).encode()
        if not message.needs_reply:
            return None
        update = self._take_update()
        if isinstance(update, SchemaChange):
            # Sent ahead of the reply on the same connection, so the mirror
            # applies it first.
            self._notify(update.encode())
            update = None
        if isinstance(update, tuple):
            return MutateReply(result, mutations=self._filter(update)).encode()
        return encode_mutate_reply(result, self._filter(update))

    def _handle_sync(self) -> bytes:
        mach = self.source.machine
        with self.source._lock:
            self._view = self._current_view(mach.time(), self._view or None)
            self._queue_tick = mach.queue_tick()
            self._machine_tick = mach.machine_tick()
            self._pending = []
            self._needs_full = False
            reply = SyncReply(tuple(self._view), self._queue_tick, self._machine_tick)
        self.machine.add(ServerStates.MetricSync)
        logger.info(
            "source %s: full resync for %s",
            self.source.id,
            self.describe(),
            extra={"mach_id": self.source.id},
        )
        return reply.encode()

    def _filter(self, update: Any) -> Any:
        push_filter = self.source.push_filter
        if push_filter is None or update is None:
            return update
        return push_filter(self, update)

    # -- pushes (on the loop) ----------------------------------------------------------

    def _push(self) -> None:
        update = self._take_update()
        if update is None:
            return
        if isinstance(update, SchemaChange):
            self._notify(update.encode())
            return
        update = self._filter(update)
        if isinstance(update, SetClock):
            self._notify(update.encode_binary())
        else:
            self._notify(SetClockMany(update).encode())

    def _send_schema_change(self) -> None:
        with self.source._lock:
            self._compute_tracking()
            change = self._export_change(full_schema=True)
        self._notify(change.encode())

    def _notify(self, data: bytes) -> None:
        conn = self.hub.conn
        if conn is None or conn.closed:
            return
        try:
            conn.notify("mirror", self.key, data)
        except Exception as err:
            logger.warning(
                "source %s: push to %s failed: %r",
                self.source.id,
                self.describe(),
                err,
                extra={"mach_id": self.source.id},
            )
            self.machine.add_err_state(ServerStates.ErrNetwork, err)

    async def _deliver(self, encoded: bytes, timeout: float) -> bool:
        conn = self.hub.conn
        try:
            if conn is None or conn.closed:
                raise ConnectionError("the mirror's connection is closed")
            reply = await conn.call("mirror", self.key, encoded, timeout=timeout)
            if reply is None or Ack.decode(reply) is None:
                raise WireError("payload reply", reply, "expected an ack")
        except Exception as err:
            logger.warning(
                "source %s: payload to %s not delivered: %r",
                self.source.id,
                self.describe(),
                err,
                extra={"mach_id": self.source.id},
            )
            self.machine.add_err_state(ServerStates.ErrDelivery, err)
            return False
        return True

    # -- closing -----------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """End the session; with a reason, say bye to the mirror first."""
        if self.closed:
            return
        self.closed = True
        self.pushing = False
        if reason:
            self._notify(Bye(reason).encode())
        self.hub._forget_source_session(self.key, self)
        self.source._remove_session(self)
        self.machine.remove(ServerStates.ClientConnected)
        self.machine.dispose()
        logger.info(
            "source %s: session %s closed%s",
            self.source.id,
            self.describe(),
            f": {reason}" if reason else "",
            extra={"mach_id": self.source.id},
        )

    def connection_lost(self) -> None:
        """Mark the session's connection as gone and end the session."""
        if self.closed:
            return
        self.machine.add_err_state(
            ServerStates.ErrNetwork, ConnectionError("the mirror's connection closed")
        )
        self.close("")

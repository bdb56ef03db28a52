"""State sources: a machine exposed to mirrors over the sync protocol.

A :class:`StateSource` wraps one machine. Its single tracer receives every
transition and fans out to the sessions, one per connected mirror. Each session
keeps its own sync state: the client's view of the clock (the tracked states, in
the client's index order, zeroed or flip-counted as its options ask), the last
view sent, and the per-mutation updates not sent yet.

Clock diffs leave either as pushes, debounced by ``push_interval``, or inside
mutation replies. Both take the diff against the last view sent and record the
new one in the same critical section, so a reply and a push never send the same
change twice.

Request handlers run inside rpyc's dispatch and cannot await, so a mutation runs
synchronously on the source machine and the reply is built at once.

Usage::

    source = StateSource(mach, push_interval=0.05)
    ...  # offered by a listener, see serve_source
    await source.send_payload("browser-bar-k3j", "history", ["hi", "hello"])
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import asyncmachine as am

from ._errors import RemoteError
from ._mirror import Mirror
from ._source_session import SourceSession
from ._wire import (
    ErrorMessage,
    Hello,
    Mutate,
    MutationType,
    Payload,
)

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["StateSource", "schema_hash"]

logger = logging.getLogger("asyncmachine.rpc")

DEFAULT_PUSH_INTERVAL = 0.05
"""Seconds between clock pushes to one mirror, at most one push per interval."""

DEFAULT_DEDUP_WINDOW = 1024
"""Mutation ids remembered per client id, for applying resent mutations once."""

# Client ids whose mutation ids are remembered; the least recently used go first.
_MAX_DEDUP_CLIENTS = 1024
# Seconds a payload waits for the mirror's acknowledgement.
_PAYLOAD_TIMEOUT = 10.0

_WIRE_KINDS = {
    MutationType.ADD: am.MutationType.ADD,
    MutationType.REMOVE: am.MutationType.REMOVE,
    MutationType.SET: am.MutationType.SET,
}
_CORE_KINDS = {core: wire for wire, core in _WIRE_KINDS.items()}


def schema_hash(schema: dict[str, am.State]) -> str:
    """Return a short digest of a schema, to skip resending an unchanged one.

    The digest is the first 16 hex digits of SHA-256 over the schema as canonical
    JSON (sorted keys, compact separators, each state as ``State.to_dict``).
    """
    document = {name: state.to_dict() for name, state in schema.items()}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _RemoteEvent:
    """The handler event of a mirror's mutation, as a mutation source.

    ``Machine.add(event=...)`` only calls ``event.source()``.
    """

    __slots__ = ("_source",)

    def __init__(self, machine_id: str, transition_id: str) -> None:
        self._source = am.Source(machine_id, transition_id, 0)

    def source(self) -> am.Source:
        return self._source


class _SourceTracer(am.Tracer):
    """The one tracer of a source machine; forwards to its :class:`StateSource`."""

    def __init__(self, source: StateSource) -> None:
        self.source = source

    def transition_end(self, tx: am.Transition, result: Any) -> None:
        self.source._on_transition(tx)

    def schema_change(self, mach: am.Machine, old_schema: dict[str, Any]) -> None:
        self.source._on_schema_change()

    def machine_dispose(self, mach_id: str) -> None:
        self.source._on_machine_dispose()


class StateSource:
    """A machine exposed to mirrors: sessions, pushes, resent-mutation memory.

    One source per machine: its tracer fans out to every session. Listeners
    (:func:`~asyncmachine.rpc.serve_source`, the WebSocket handler, a peer's
    offer) route each mirror's hello here.

    Args:
        mach: The machine to expose.
        token: Secret every mirror must present in its hello; None accepts any.
        allowed_ids: Client ids allowed to connect; None allows every id.
        push_interval: Seconds between pushes to one mirror: the first change
            after a quiet period is pushed on the next loop iteration, later
            ones wait for the interval and leave merged in one diff. 0 pushes
            every change on the next loop iteration; None disables pushes, so
            mirrors learn of changes only from their own mutation replies.
        dedup_window: Mutation ids remembered per client id. A resent
            mutation is applied once only while at most this many newer
            mutations of the same client arrived in between.
        on_session_open: Called with each new :class:`SourceSession`, after
            its handshake reply is ready; ``session.client_id`` is the
            mirror's id and ``session.peer`` its connection's peer.
        on_session_close: Called with each session that ended, also when its
            connection was lost.

    Both callbacks run on the source's event loop. An exception in one is
    logged and does not affect the session.

    Raises:
        ValueError: The machine already has a StateSource, or an option is
            out of range.
    """

    def __init__(
        self,
        mach: am.Machine,
        *,
        token: str | None = None,
        allowed_ids: Collection[str] | None = None,
        push_interval: float | None = DEFAULT_PUSH_INTERVAL,
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        on_session_open: Callable[[SourceSession], Any] | None = None,
        on_session_close: Callable[[SourceSession], Any] | None = None,
    ) -> None:
        if not isinstance(mach, am.Machine):
            raise TypeError(f"expected an asyncmachine Machine, got {mach!r}")
        for tracer in mach.tracers():
            if isinstance(tracer, _SourceTracer):
                raise ValueError(
                    f"machine {mach.id!r} already has a StateSource; pass that "
                    "source to the listener instead of the machine"
                )
        if push_interval is not None and push_interval < 0:
            raise ValueError(f"push_interval must be >= 0 or None, got {push_interval}")
        if dedup_window < 1:
            raise ValueError(f"dedup_window must be at least 1, got {dedup_window}")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty str or None")
        self.machine = mach
        self.token = token
        self.allowed_ids = None if allowed_ids is None else frozenset(allowed_ids)
        self.push_interval = push_interval
        self.dedup_window = dedup_window
        self.push_filter: Any = None
        """Test hook: ``push_filter(session, diff)`` returns the diff to send."""
        self.duplicates = 0
        """Resent mutations whose stored result was returned instead of reapplying."""
        self._on_session_open = on_session_open
        self._on_session_close = on_session_close

        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # Guards the sessions' views, which the tracer may update from the thread
        # running the source machine's queue.
        self._lock = threading.RLock()
        self._sessions: list[SourceSession] = []
        self._session_numbers = 0
        self._dedup: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()
        # Counts the source's transitions, so a push can skip the sessions that
        # exported everything already (e.g. in a mutation's reply).
        self._generation = 0
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
        self._schema_hash = schema_hash(mach.schema())
        self._closed = False
        self._tracer = _SourceTracer(self)
        mach.add_tracer(self._tracer)

    @property
    def id(self) -> str:
        """The source machine's id."""
        return self.machine.id

    @property
    def sessions(self) -> tuple[SourceSession, ...]:
        """The sessions of connected mirrors."""
        return tuple(self._sessions)

    def __repr__(self) -> str:
        return f"<StateSource {self.id} sessions={len(self._sessions)}>"

    # -- sessions ----------------------------------------------------------------------

    def check_access(self, hello: Hello) -> ErrorMessage | None:
        """Return the rejection of a hello, or None when the client may connect."""
        if self._closed or self.machine.is_disposed():
            return ErrorMessage("unavailable", f"source {self.id} is closed")
        if self.token is not None and not hmac.compare_digest(
            hello.token.encode("utf-8"), self.token.encode("utf-8")
        ):
            reason = "missing token" if not hello.token else "invalid token"
            return ErrorMessage("no_access", f"{reason} for source {self.id}")
        if self.allowed_ids is not None and hello.machine_id not in self.allowed_ids:
            return ErrorMessage(
                "no_access",
                f"client id {hello.machine_id!r} is not allowed by source {self.id}",
            )
        return None

    def open_session(self, hub: Hub, key: str, hello: Hello) -> tuple[Any, bytes]:
        """Start a session for a mirror's hello; return it and the encoded reply.

        Returns ``(None, error reply)`` when the hello is rejected.
        """
        rejection = self.check_access(hello)
        if rejection is None:
            rejection = _check_selection(self.machine, hello)
        if rejection is not None:
            logger.warning(
                "source %s: rejected hello of %r on %s: %s",
                self.id,
                hello.machine_id,
                hub.describe(key),
                rejection.message,
                extra={"mach_id": self.id},
            )
            return None, rejection.encode()
        self._session_numbers += 1
        session = SourceSession(self, hub, key, hello, self._session_numbers)
        with self._lock:
            reply = session._start(hello)
            self._sessions.append(session)
        logger.info(
            "source %s: session %s of client %r opened on %s",
            self.id,
            session.machine.id,
            hello.machine_id,
            hub.describe(key),
            extra={"mach_id": self.id},
        )
        self._run_callback(self._on_session_open, session)
        return session, reply.encode()

    def _remove_session(self, session: SourceSession) -> None:
        with self._lock:
            if session not in self._sessions:
                return
            self._sessions.remove(session)
        self._run_callback(self._on_session_close, session)

    def _run_callback(
        self, callback: Callable[[SourceSession], Any] | None, session: SourceSession
    ) -> None:
        """Run a session callback, logging its exception instead of raising it."""
        if callback is None:
            return
        try:
            callback(session)
        except Exception:
            logger.exception(
                "source %s: session callback %r failed for session %s",
                self.id,
                callback,
                session.describe(),
                extra={"mach_id": self.id},
            )

    # -- mutations ---------------------------------------------------------------------

    def _apply_mutation(
        self, session: SourceSession, message: Mutate, names: list[str]
    ) -> int:
        """Run a mirror's mutation once per mutation id; return its result."""
        mutation_id = message.mutation_id
        if mutation_id:
            done = self._dedup.get(session.client_id)
            if done is not None and mutation_id in done:
                self.duplicates += 1
                self._dedup.move_to_end(session.client_id)
                logger.debug(
                    "source %s: mutation %s of %s applied already, result %d",
                    self.id,
                    mutation_id,
                    session.describe(),
                    done[mutation_id],
                    extra={"mach_id": self.id},
                )
                return done[mutation_id]
        result = int(self._run_mutation(message, names))
        if mutation_id:
            self._remember(session.client_id, mutation_id, result)
        return result

    def _run_mutation(self, message: Mutate, names: list[str]) -> am.Result:
        mach = self.machine
        if isinstance(mach, Mirror):
            # TODO: forward to the mirror's own source; a request handler cannot
            # wait for that reply, so the result would have to follow later.
            raise NotImplementedError(
                f"source {mach.id} is a mirror of {mach.remote_id}; mutate that "
                "source instead"
            )
        event = None
        if message.event is not None:
            event = _RemoteEvent(message.event.machine_id, message.event.transition_id)
        args = message.args
        if message.error is not None:
            err = RemoteError(message.error)
            states = [name for name in names if name != am.EXCEPTION]
            if "ErrOnClient" in mach.state_names() and "ErrOnClient" not in states:
                states.append("ErrOnClient")
            if not states:
                return mach.add_err(err, args, event=event)  # type: ignore[arg-type]
            if len(states) == 1:
                return mach.add_err_state(
                    states[0],
                    err,
                    args,
                    event=event,  # type: ignore[arg-type]
                )
            # Several error states: add_err_state takes one, so use the shared
            # implementation of both.
            called = mach._parse_states([*states, am.EXCEPTION])
            return mach._add_err(called, err, args, event)  # type: ignore[arg-type]
        if message.kind is MutationType.ADD:
            return mach.add(names, args, event=event)  # type: ignore[arg-type]
        if message.kind is MutationType.REMOVE:
            return mach.remove(names, args, event=event)  # type: ignore[arg-type]
        return mach.set(names, args, event=event)  # type: ignore[arg-type]

    def _remember(self, client_id: str, mutation_id: str, result: int) -> None:
        done = self._dedup.get(client_id)
        if done is None:
            done = self._dedup[client_id] = OrderedDict()
            if len(self._dedup) > _MAX_DEDUP_CLIENTS:
                self._dedup.popitem(last=False)
        else:
            self._dedup.move_to_end(client_id)
        done[mutation_id] = result
        if len(done) > self.dedup_window:
            done.popitem(last=False)

    # -- tracer callbacks (any thread) -------------------------------------------------

    def _on_transition(self, tx: am.Transition) -> None:
        sessions = self._sessions
        if not sessions or tx.mutation.check:
            return
        with self._lock:
            self._generation += 1
            for session in self._sessions:
                if session.per_mutation:
                    session._record_transition(tx)
        self._schedule_flush()

    def _on_schema_change(self) -> None:
        self._schema_hash = schema_hash(self.machine.schema())
        self._call_in_loop(self._send_schema_changes)

    def _on_machine_dispose(self) -> None:
        self._call_in_loop(self._close_sessions, "source machine disposed")

    def _call_in_loop(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # -- pushes ------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if threading.get_ident() != self._loop_thread:
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._schedule_flush)
            return
        if self._flush_handle is not None or self.push_interval is None:
            return
        delay = self._last_flush + self.push_interval - self._loop.time()
        # A timer, even without delay, runs after the callbacks already queued,
        # among them the writer that sends a mutation's reply.
        self._flush_handle = self._loop.call_later(max(0.0, delay), self._flush)

    def _flush(self) -> None:
        """Push the changes since the last export to every ready session."""
        self._flush_handle = None
        self._last_flush = self._loop.time()
        generation = self._generation
        for session in list(self._sessions):
            if session.pushing and session._exported != generation:
                session._push()

    def _send_schema_changes(self) -> None:
        for session in list(self._sessions):
            if session.pushing:
                session._send_schema_change()

    def _close_sessions(self, reason: str) -> None:
        for session in list(self._sessions):
            session.close(reason)

    # -- payloads ----------------------------------------------------------------------

    async def send_payload(
        self,
        client_id: str | None,
        name: str,
        data: Any = None,
        *,
        event: am.Event | None = None,
        timeout: float = _PAYLOAD_TIMEOUT,
    ) -> int:
        """Send data to the mirrors of a client; return how many received it.

        The payload travels in order with the clock pushes. A session whose
        mirror does not acknowledge it gets ``ErrDelivery``.

        Args:
            client_id: The client id the mirrors connected with, or None for
                every connected mirror.
            name: What the payload is, for the receiver to dispatch on.
            data: Any JSON-compatible value.
            event: The handler event that sends it, recorded as its source.
            timeout: Seconds to wait for each acknowledgement.

        Raises:
            WireError: ``data`` is not JSON-compatible (the error names the
                part that is not).
        """
        source = event.machine.id if event is not None else self.id
        source_tx = event.transition.id if event is not None else ""
        targets = [
            session
            for session in self._sessions
            if session.pushing and (client_id is None or session.client_id == client_id)
        ]
        message = Payload(
            name,
            data,
            destination=client_id or "",
            token=secrets.token_hex(8),
            source=source,
            source_tx=source_tx,
        )
        encoded = message.encode()
        results = await asyncio.gather(
            *(session._deliver(encoded, timeout) for session in targets)
        )
        return sum(results)

    # -- closing -----------------------------------------------------------------------

    async def close(self, reason: str = "source closed") -> None:
        """Say bye to every mirror, end the sessions and detach from the machine."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._close_sessions(reason)
        if self._tracer in self.machine.tracers():
            self.machine.remove_tracer(self._tracer)
        # Lets the byes leave before the listener closes the connections.
        await asyncio.sleep(0)


def _check_selection(mach: am.Machine, hello: Hello) -> ErrorMessage | None:
    names = set(mach.state_names())
    for field, selected in (
        ("allowed", hello.allowed_states),
        ("skipped", hello.skipped_states),
    ):
        unknown = [name for name in selected or () if name not in names]
        if unknown:
            return ErrorMessage(
                "invalid_options",
                f"{field} states {unknown} are not states of {mach.id}",
            )
    return None

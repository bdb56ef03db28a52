"""The machine: states with clocks, the mutation queue, waits and views."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from ._errors import SchemaError, StateError
from ._handlers import DispatchTable, HandlerGroup, is_final_name
from ._schema import EXCEPTION, State, compile_schema
from ._tracer import Tracer
from ._transition import Transition
from ._types import (
    ADD,
    CANCELED,
    EXECUTED,
    REMOVE,
    SET,
    Event,
    LogLevel,
    Mutation,
    MutationType,
    Result,
)
from ._waits import StateContext, Waiter, call_in_loop

__all__ = ["Machine", "machines"]

logger = logging.getLogger("asyncmachine.machine")
# Live machines of this process by id, for shells and notebooks; weak, so a
# machine that is no longer referenced elsewhere disappears from it.
_registry: weakref.WeakValueDictionary[str, Machine] = weakref.WeakValueDictionary()


def machines() -> list[Machine]:
    """Return the live, not disposed machines of this process, sorted by id."""
    found = [m for m in list(_registry.values()) if not m.is_disposed()]
    return sorted(found, key=lambda m: m.id)


_STD_LEVELS = {
    LogLevel.EXTERNAL: logging.INFO,
    LogLevel.CHANGES: logging.INFO,
    LogLevel.OPS: logging.DEBUG,
    LogLevel.DECISIONS: logging.DEBUG,
    LogLevel.EVERYTHING: logging.DEBUG,
}
# LogLevel members as module constants. In CPython 3.11 reading an attribute
# of an Enum class goes through the __getattr__ hook of EnumType, which costs
# several times a global lookup, and every mutation compares log levels.
_EXTERNAL = LogLevel.EXTERNAL
_CHANGES = LogLevel.CHANGES
_OPS = LogLevel.OPS
_RESTORED_STATE = "MachineRestored"
_START_STATE = "Start"
# Kinds of mutation calls, for the entry checks of the queue.
_K_ADD, _K_REMOVE, _K_SET, _K_ERR, _K_EV_ADD, _K_EV_REMOVE = range(6)


def _env_log_level() -> LogLevel:
    value = os.environ.get("AM_LOG", "").strip()
    if not value:
        return LogLevel.NOTHING
    if value.isdigit():
        return LogLevel(min(int(value), LogLevel.EVERYTHING))
    try:
        return LogLevel[value.upper()]
    except KeyError:
        logger.warning(
            "AM_LOG=%r is not a log level; use 0-5 or one of %s",
            value,
            ", ".join(level.name.lower() for level in LogLevel),
        )
        return LogLevel.NOTHING


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _overrides(tracer: Tracer, hook: str) -> bool:
    """Tell whether `tracer` has its own `hook` method, not the no-op of Tracer."""
    method = getattr(tracer, hook, None)
    if method is None:
        return False
    return getattr(method, "__func__", method) is not getattr(Tracer, hook)


class Machine:
    """A state machine where many states can be active at once.

    Each state has a tick that grows on every activation and deactivation, so an
    odd tick means active. Mutations (:meth:`add`, :meth:`remove`, :meth:`set`) run
    synchronously in the caller, handlers included. A mutation made while the
    queue runs (from a handler, or from another thread) is queued instead, and
    returns a queued result.

    Args:
        schema: state names mapped to :class:`State` (or mappings of its fields).
        id: the machine id; random when not given.
        handlers: a handler object, or a list of them, bound at construction.
        state_order: every state name, ``Exception`` included, in the order used
            by clocks and string forms; default: the schema's order.
        queue_limit: the maximum number of queued mutations; more are canceled.
        handler_timeout: seconds one handler may take; None disables the check.
            Python cannot interrupt a running handler, so an overrun is detected
            when it returns, and the transition is then canceled.
        handler_deadline: seconds after which an overrun also clears the queue,
            adds ``Exception`` and rejects mutations for ``handler_backoff``.
        log_level: a :class:`LogLevel`; default from the ``AM_LOG`` variable.
        tracers: :class:`Tracer` objects to attach.
        parent_id: the id of a parent machine, for tooling.
        tags: free metadata.
        catch_panics: turn handler exceptions into ``Exception`` (the default);
            when False they propagate to the caller of the mutation.
        strict: raise :class:`SchemaError` for relations naming unknown states.
            When False the reference's parsing applies: unknown names in add,
            remove and after are dropped, and an unknown required state makes
            the requiring state impossible to activate.
    """

    __slots__ = (
        "_id",
        "_parent_id",
        "_tags",
        "_compiled",
        "_ticks",
        "_active",
        "_active_set",
        "_queue",
        "_queue_tick",
        "_next_tick",
        "_machine_tick",
        "_processing",
        "_lock",
        "_transition",
        "_groups",
        "_group_seq",
        "_dispatch",
        "_log_level",
        "_handler_timeout",
        "_handler_deadline",
        "_handler_backoff",
        "_backoff_until",
        "_queue_limit",
        "_catch_panics",
        "_tracers",
        "_start_tracers",
        "_queue_end_tracers",
        "_err",
        "_waiters",
        "_waiter_keys",
        "_args_waiters",
        "_queue_end_waiters",
        "_disposed_waiters",
        "_contexts",
        "_disposing",
        "_disposed",
        "_dispose_callbacks",
        "_breakpoints",
        "_loop",
        "_tasks",
        "_groups_meta",
        "_internal_errors",
        "__weakref__",
    )

    def __init__(
        self,
        schema: Mapping[str, State | Mapping[str, Any]],
        *,
        id: str | None = None,
        handlers: Any = None,
        state_order: Iterable[str] | None = None,
        queue_limit: int = 1000,
        handler_timeout: float | None = 0.1,
        handler_deadline: float = 10.0,
        handler_backoff: float = 3.0,
        log_level: LogLevel | int | None = None,
        tracers: Iterable[Tracer] = (),
        parent_id: str | None = None,
        tags: Iterable[str] = (),
        catch_panics: bool = True,
        strict: bool = True,
    ) -> None:
        if id is None:
            id = secrets.token_hex(8)
        elif not isinstance(id, str) or not id:
            raise TypeError(f"machine id must be a non-empty str, got {id!r}")
        compiled = compile_schema(schema, state_order, strict)
        self._id = id
        self._parent_id = parent_id
        self._tags = tuple(tags)
        self._compiled = compiled
        # Transitions replace these three with new objects and never change
        # them in place, so that a transition can keep them as its snapshot.
        self._ticks = dict.fromkeys(compiled.names, 0)
        self._active: list[str] = []
        self._active_set: frozenset[str] = frozenset()
        self._queue: deque[Mutation] = deque()
        self._queue_tick = 1
        # The queue tick the next appended mutation gets.
        self._next_tick = 2
        self._machine_tick = 0
        self._processing = False
        self._lock = threading.Lock()
        self._transition: Transition | None = None
        self._groups: list[HandlerGroup] = []
        self._group_seq = 0
        self._dispatch: DispatchTable | None = None
        self._log_level = (
            LogLevel(log_level) if log_level is not None else _env_log_level()
        )
        if os.environ.get("AM_DEBUG"):
            catch_panics = False
            handler_timeout = 600.0
        self._handler_timeout = handler_timeout or 0.0
        self._handler_deadline = handler_deadline
        self._handler_backoff = handler_backoff
        self._backoff_until = 0.0
        self._queue_limit = queue_limit
        self._catch_panics = catch_panics
        self._tracers: list[Tracer] = []
        # The tracers that override the hooks called for every transition or
        # queue, so that the default no-op methods cost no call.
        self._start_tracers: list[Tracer] = []
        self._queue_end_tracers: list[Tracer] = []
        self._err: BaseException | None = None
        self._waiters: list[Waiter] = []
        self._waiter_keys: dict[Any, Waiter] = {}
        self._args_waiters: list[Waiter] = []
        self._queue_end_waiters: list[Waiter] = []
        self._disposed_waiters: list[Waiter] = []
        self._contexts: dict[str, StateContext] = {}
        self._disposing = False
        self._disposed = False
        self._dispose_callbacks: list[Callable[[str], Any]] = []
        self._breakpoints: list[tuple[tuple[str, ...], tuple[str, ...], bool]] = []
        self._loop = _running_loop()
        self._tasks: set[Any] = set()
        self._groups_meta: tuple[dict[str, list[str]], list[str]] = ({}, [])
        self._internal_errors: deque[BaseException] = deque(maxlen=100)

        _registry[id] = self
        for tracer in tracers:
            self.add_tracer(tracer)
        if os.environ.get("AM_DBG_ADDR"):
            # Zero-code telemetry; imported lazily, so the core needs no network
            # code unless the variable is set. It logs errors and never raises.
            from .telemetry import attach_from_env

            attach_from_env(self)
        if os.environ.get("AM_REPL_DIR"):
            # Zero-code REPL endpoint; rpyc is imported only when this is set.
            try:
                from .rpc.repl import maybe_expose_from_env
            except ImportError as err:
                logger.warning(
                    "AM_REPL_DIR is set, but REPL endpoints need rpyc: %s", err
                )
            else:
                maybe_expose_from_env(self)
        if compiled.errors:
            self.add_err(SchemaError("; ".join(compiled.errors)))
        if handlers is not None:
            groups = handlers if isinstance(handlers, list | tuple) else [handlers]
            for group in groups:
                self.bind_handlers(group)

    # Identity

    @property
    def id(self) -> str:
        """The machine id."""
        return self._id

    @property
    def parent_id(self) -> str | None:
        """The parent machine's id, if any."""
        return self._parent_id

    @property
    def tags(self) -> tuple[str, ...]:
        """Free metadata given at construction."""
        return self._tags

    def __repr__(self) -> str:
        return f"<Machine {self._id} {self}>"

    # Argument parsing

    def _parse_states(self, states: Any) -> tuple[str, ...]:
        """Return states as a tuple without duplicates; raise for unknown names."""
        if type(states) is str:
            if states in self._ticks:
                return (states,)
            called: tuple[str, ...] = (states,)
        elif isinstance(states, list | tuple):
            for state in states:
                if type(state) is not str:
                    raise TypeError(
                        f"state names must be str, got {state!r} in {states!r}"
                    )
            called = tuple(dict.fromkeys(states)) if len(states) > 1 else tuple(states)
        elif isinstance(states, Iterable) and not isinstance(states, bytes | Mapping):
            return self._parse_states(list(states))
        else:
            raise TypeError(
                f"states must be a state name or a list of names, got {states!r}"
            )
        ticks = self._ticks
        for state in called:
            if state not in ticks:
                unknown = [s for s in called if s not in ticks]
                raise StateError(
                    f"unknown states {unknown} for machine {self._id!r}; "
                    f"known states: {list(self._compiled.names)}"
                )
        return called

    @staticmethod
    def _parse_args(args: Any) -> dict[str, Any] | None:
        if args is None:
            return None
        if type(args) is dict:
            return args
        if isinstance(args, Mapping):
            return dict(args)
        raise TypeError(f"args must be a mapping (dict), got {args!r}")

    @staticmethod
    def _flatten(states: tuple[Any, ...]) -> tuple[str, ...]:
        if len(states) == 1 and not isinstance(states[0], str):
            return tuple(states[0])
        return states

    # Mutations

    def add(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Activate `states`, keeping the active ones (relations permitting)."""
        called = self._compiled.singles.get(states) if type(states) is str else None
        if called is None:
            called = self._parse_states(states)
        mutation = Mutation(
            ADD,
            called,
            None if args is None else self._parse_args(args),
            False,
            False,
            None if event is None else event.source(),
        )
        return self._enqueue(mutation, _K_EV_ADD if event is not None else _K_ADD)

    def remove(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Deactivate `states`."""
        called = self._compiled.singles.get(states) if type(states) is str else None
        if called is None:
            called = self._parse_states(states)
        mutation = Mutation(
            REMOVE,
            called,
            None if args is None else self._parse_args(args),
            False,
            False,
            None if event is None else event.source(),
        )
        return self._enqueue(mutation, _K_EV_REMOVE if event is not None else _K_REMOVE)

    def set(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Make `states` (and what their relations imply) the only active states."""
        called = self._compiled.singles.get(states) if type(states) is str else None
        if called is None:
            called = self._parse_states(states)
        mutation = Mutation(
            SET,
            called,
            None if args is None else self._parse_args(args),
            False,
            False,
            None if event is None else event.source(),
        )
        return self._enqueue(mutation, _K_SET)

    def toggle(
        self,
        states: str | Iterable[str],
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Remove `states` when all of them are active, otherwise add them."""
        called = self._parse_states(states)
        if self.is_active(*called):
            return self.remove(called, args, event=event)
        return self.add(called, args, event=event)

    def add_err(
        self,
        err: BaseException | None,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Store `err` as the last error and add ``Exception``."""
        return self._add_err((EXCEPTION,), err, args, event)

    def add_err_state(
        self,
        state: str,
        err: BaseException | None,
        args: Mapping[str, Any] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Store `err` and add both `state` (an error state) and ``Exception``."""
        called = self._parse_states([state, EXCEPTION])
        return self._add_err(called, err, args, event)

    def _add_err(
        self,
        called: tuple[str, ...],
        err: BaseException | None,
        args: Mapping[str, Any] | None,
        event: Event | None,
    ) -> Result:
        if err is not None and not isinstance(err, BaseException):
            raise TypeError(f"err must be an exception or None, got {err!r}")
        parsed = self._parse_args(args)
        if self._disposing or self._in_backoff():
            return CANCELED
        if len(self._queue) >= self._queue_limit:
            self._log_queue_full(called)
            return CANCELED
        if err is None or isinstance(err, asyncio.CancelledError):
            return CANCELED
        self._err = err
        merged = dict(parsed) if parsed else {}
        merged["err"] = err
        if err.__traceback__ is not None:
            merged["err_trace"] = "".join(traceback.format_exception(err))
        mutation = Mutation(
            ADD,
            called,
            merged,
            source=event.source() if event is not None else None,
        )
        return self._enqueue(mutation, _K_ERR, checked=True)

    def sync_clock(
        self,
        clock: Mapping[str, int] | Iterable[int],
        *,
        queue_tick: int | None = None,
        machine_tick: int | None = None,
    ) -> Result:
        """Apply ticks decided elsewhere, as mirrors of remote machines do.

        `clock` maps state names to ticks, or lists ticks in state order. The change
        runs as one queued transition: contexts end, waiters resolve, and the final
        handlers (End, State, AnyState) of the changed states run, but no
        negotiation and no relations, since the source machine applied them.

        Raises:
            StateError: a name is not a state of this machine.
            ValueError: a tick is negative or not an int. A tick lower than the
                current one is accepted, because a mirror resyncing with a
                restarted source must take the source's clock as it is.
        """
        if isinstance(clock, Mapping):
            ticks = dict(clock)
            self._parse_states(list(ticks))
        else:
            values = list(clock)
            names = self._compiled.names
            if len(values) != len(names):
                raise ValueError(
                    f"sync_clock got {len(values)} ticks, machine {self._id!r} has "
                    f"{len(names)} states"
                )
            ticks = dict(zip(names, values, strict=True))
        for name, tick in ticks.items():
            if type(tick) is not int or tick < 0:
                raise ValueError(f"tick of {name!r} must be an int >= 0, got {tick!r}")
        if self._disposing:
            return CANCELED
        mutation = Mutation(SET, (), None)
        mutation.clock = (ticks, queue_tick, machine_tick)
        with self._lock:
            self._queue.append(mutation)
            if self._processing:
                return Result(2)
            self._processing = True
        return self._drain()

    def can_add(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None
    ) -> Result:
        """Check whether adding `states` would be accepted, running negotiation only."""
        return self._check(ADD, states, args)

    def can_remove(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None
    ) -> Result:
        """Check whether removing `states` would be accepted (negotiation only)."""
        return self._check(REMOVE, states, args)

    def _check(self, mtype: MutationType, states: Any, args: Any) -> Result:
        mutation = Mutation(
            mtype, self._parse_states(states), self._parse_args(args), check=True
        )
        if self._disposing or self._in_backoff():
            return CANCELED
        with self._lock:
            self._queue.appendleft(mutation)
            if self._processing:
                return Result(2)
            self._processing = True
        return self._drain(mutation)

    def _in_backoff(self) -> bool:
        return self._backoff_until > 0.0 and time.monotonic() < self._backoff_until

    def _enqueue(self, mutation: Mutation, kind: int, checked: bool = False) -> Result:
        """Run the entry checks, append `mutation` and drain the queue."""
        called = mutation.called
        if not checked:
            if self._disposing:
                return CANCELED
            if self._backoff_until and kind != _K_SET and self._in_backoff():
                return CANCELED
            if len(self._queue) >= self._queue_limit and not self._limit_allows(
                kind, called
            ):
                self._log_queue_full(called)
                return CANCELED
        mtype = mutation.type
        if self._breakpoints and mtype is not SET:
            self._check_breakpoints(mutation)
        with self._lock:
            queue = self._queue
            if queue:
                if not mutation.args and self._compiled.multi.isdisjoint(called):
                    if self._find_duplicate(mutation):
                        return EXECUTED
            elif (
                mtype is REMOVE
                and self._transition is not None
                and self._active_set.isdisjoint(called)
            ):
                # Nothing to remove while a transition runs: done already.
                return EXECUTED
            tick = mutation.queue_tick = self._next_tick
            self._next_tick = tick + 1
            # An idle machine with an empty queue would pop the mutation right
            # away, so it runs the mutation without putting it in the queue.
            direct = not queue and not self._processing
            if not direct:
                queue.append(mutation)
            if self._log_level >= _OPS:
                self._emit(
                    LogLevel.OPS, "[queue:%s] %s", (mtype.value, " ".join(called))
                )
            if self._processing:
                if self._log_level >= _OPS:
                    self._emit(
                        LogLevel.OPS,
                        "[postpone] queue running (%d items)",
                        (len(queue),),
                    )
                return Result(tick)
            self._processing = True
        return self._drain(mutation, direct)

    def _find_duplicate(self, mutation: Mutation) -> bool:
        """Return whether the queue holds a mutation like `mutation`; log it if so.

        Call it with the lock held, for a mutation without args and without
        Multi states.
        """
        mtype = mutation.type
        called = mutation.called
        called_set = set(called)
        for queued in self._queue:
            if (
                queued.type is mtype
                and not queued.check
                and not queued.args
                and set(queued.called) == called_set
            ):
                if self._log_level >= _OPS:
                    self._emit(
                        LogLevel.OPS,
                        "[queue:skipped] Duplicate detected for [%s] %s",
                        (mtype.value, " ".join(called)),
                    )
                return True
        return False

    def _limit_allows(self, kind: int, called: tuple[str, ...]) -> bool:
        # One Exception may enter a full queue, as in the reference.
        if EXCEPTION not in called:
            return False
        if kind == _K_ADD:
            return EXCEPTION not in self._active_set
        if kind == _K_REMOVE:
            return EXCEPTION in self._active_set
        return False

    def _log_queue_full(self, called: tuple[str, ...]) -> None:
        if self._log_level >= _OPS:
            self._emit(
                LogLevel.OPS,
                "[queue:full] %s canceled, the queue holds %d mutations",
                (" ".join(called), self._queue_limit),
            )

    def _prepend(self, mutation: Mutation) -> None:
        with self._lock:
            self._queue.appendleft(mutation)
        if self._log_level >= _OPS:
            self._emit(
                LogLevel.OPS,
                "[prepend:%s] %s",
                (mutation.type.value, " ".join(mutation.called)),
            )

    def _queue_auto(self) -> None:
        """Prepend an auto mutation calling every eligible auto state."""
        active = self._active_set
        removed_by = self._compiled.removed_by
        candidates = []
        for state in self._compiled.auto_states:
            if state in active:
                continue
            blockers = removed_by.get(state)
            if blockers is not None and not blockers.isdisjoint(active):
                continue
            candidates.append(state)
        if candidates:
            if self._log_level >= _OPS:
                self._emit(LogLevel.OPS, "[auto] %s", (" ".join(candidates),))
            self._prepend(Mutation(ADD, tuple(candidates), None, auto=True))

    def _drain(self, own: Mutation | None = None, direct: bool = False) -> Result:
        """Run queued mutations until the queue is empty.

        Returns the result of `own`, the caller's mutation, or else the first
        result. With `direct`, `own` is not in the queue and runs first.
        Mutations left by a handler exception that propagated
        (``catch_panics=False``) run first, but their results are not returned.
        """
        first: Result | None = None
        own_result: Result | None = None
        queue = self._queue
        lock = self._lock
        mutation = own if direct else None
        try:
            while True:
                # Only the thread that set _processing pops, so popping needs no
                # lock; going idle does, so that no appended mutation is missed.
                if mutation is None:
                    if not queue:
                        with lock:
                            if queue:
                                continue
                            self._processing = False
                        break
                    mutation = queue.popleft()
                if mutation.queue_tick:
                    self._queue_tick += 1
                tx = Transition(self, mutation)
                self._transition = tx
                try:
                    result = tx.run()
                finally:
                    self._transition = None
                if first is None:
                    first = result
                if mutation is own:
                    own_result = result
                if tx.accepted and not mutation.check and self._waiters:
                    self._process_waiters(tx)
                mutation = None
        except BaseException:
            with lock:
                self._processing = False
            raise
        if self._queue_end_waiters:
            waiters = self._queue_end_waiters
            self._queue_end_waiters = []
            for waiter in waiters:
                waiter._resolve()
        if self._queue_end_tracers:
            for tracer in self._queue_end_tracers:
                tracer.queue_end(self)
        if self._disposing and not self._disposed:
            self._finish_dispose()
        if own_result is not None:
            return own_result
        return first if first is not None else CANCELED

    # Handlers

    def bind_handlers(self, handlers: Any, *, prefix: str | None = None) -> str:
        """Bind a handler object; return its group id for :meth:`detach_handlers`.

        Methods named after states (``FooEnter``, ``FooState``, ``FooBar``, ...) are
        called with the event. Negotiation handlers (all but ``...State`` and
        ``...End``) must be plain functions; final ones may be ``async def``.
        With `prefix`, the group receives only events starting with it, with the
        prefix stripped (``prefix="Foo"`` makes ``FooAState`` call ``AState``).
        """
        if handlers is None:
            raise TypeError("handlers must be an object with handler methods, got None")
        self._group_seq += 1
        group_id = f"{type(handlers).__name__}-{self._group_seq}"
        group = HandlerGroup(group_id, handlers, prefix)
        for name, (_func, is_async) in {
            **group.class_index,
            **group.instance_index,
        }.items():
            if (
                is_async
                and not is_final_name(name)
                and self._is_handler_name((prefix or "") + name)
            ):
                raise TypeError(
                    f"handler {name} of {type(handlers).__name__} is async, but "
                    f"negotiation handlers must be plain functions returning a bool; "
                    f"only final handlers (...State, ...End) may be async"
                )
        first = not self._groups
        self._groups.append(group)
        self._dispatch = DispatchTable(self._groups)
        if self._log_level >= _OPS:
            self._emit(
                LogLevel.OPS, "[handlers] bind %d:%s", (len(self._groups), group_id)
            )
        for tracer in self._tracers:
            tracer.handlers_bound(self, group_id)
        if first and EXCEPTION in self._active_set and self._err is not None:
            # The reference re-adds the last error for the first bound group.
            self.add_err(self._err)
        return group_id

    def _is_handler_name(self, name: str) -> bool:
        """Return whether `name` names a negotiation handler of this machine."""
        if name == "AnyEnter":
            return True
        ticks = self._ticks
        for suffix in ("Enter", "Exit"):
            if name.endswith(suffix) and name[: -len(suffix)] in ticks:
                return True
        return any(name.startswith(x) and name[len(x) :] in ticks for x in ticks)

    def detach_handlers(self, group_id: str) -> None:
        """Detach the handler group `group_id`."""
        for group in self._groups:
            if group.id == group_id:
                self._groups.remove(group)
                break
        else:
            raise KeyError(
                f"no handler group {group_id!r} on machine {self._id!r}; "
                f"bound groups: {self.handlers()}"
            )
        self._dispatch = DispatchTable(self._groups) if self._groups else None

    def handlers(self) -> list[str]:
        """Return the ids of the bound handler groups, in binding order."""
        return [group.id for group in self._groups]

    def _start_handler_task(self, coro: Any, state: str | None, name: str) -> None:
        """Run a coroutine returned by an async final handler as a task."""
        ctx = None
        if state is not None and state in self._ticks:
            ctx = self.state_ctx(state)
        self._spawn(coro, ctx, name)

    def fork(
        self, ctx: StateContext | None, coro: Coroutine[Any, Any, Any]
    ) -> asyncio.Future[Any] | None:
        """Run `coro` as a task that is cancelled when `ctx` ends.

        An exception raised by the task is added as an error (``add_err``). Returns
        the task, or None when `ctx` already ended (the coroutine is closed).
        """
        return self._spawn(coro, ctx, getattr(coro, "__qualname__", "fork"))

    def _spawn(
        self, coro: Any, ctx: StateContext | None, name: str
    ) -> asyncio.Future[Any] | None:
        if ctx is not None and ctx.done():
            coro.close()
            return None
        loop = _running_loop()
        if loop is None:
            loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            self.add_err(
                RuntimeError(
                    f"{name} of machine {self._id} is async and needs a running "
                    f"asyncio loop; mutate the machine from a coroutine"
                )
            )
            return None
        if _running_loop() is loop:
            task: Any = loop.create_task(coro)
        else:
            task = asyncio.run_coroutine_threadsafe(coro, loop)
        self._tasks.add(task)

        def on_done(done: Any) -> None:
            self._tasks.discard(done)
            if done.cancelled():
                return
            err = done.exception()
            if err is not None:
                self._log_error(
                    "task %s of machine %s raised %s: %s",
                    name,
                    self._id,
                    type(err).__name__,
                    err,
                )
                self.add_err(err)

        task.add_done_callback(on_done)
        if ctx is not None:
            if isinstance(task, asyncio.Task):
                ctx.add_done_callback(lambda _: call_in_loop(loop, task.cancel))
            else:
                ctx.add_done_callback(lambda _: task.cancel())
        return task

    # Checks and views

    def is_active(self, *states: Any) -> bool:
        """Return whether all `states` are active (unknown names count as inactive)."""
        if self._disposing and self._disposed:
            return False
        active = self._active_set
        for state in self._flatten(states):
            if state not in active:
                return False
        return True

    def is_inactive(self, *states: Any) -> bool:
        """Return whether none of `states` is active.

        Raises:
            StateError: a name is not in the schema.
        """
        called = self._parse_states(list(self._flatten(states)))
        return self._active_set.isdisjoint(called)

    def any_active(self, *groups: Any) -> bool:
        """Return whether some group (a name or a list of names) is fully active."""
        for group in groups:
            if isinstance(group, str):
                if self.is_active(group):
                    return True
            elif self.is_active(*group):
                return True
        return False

    def has(self, *states: Any) -> bool:
        """Return whether every name is a state of this machine."""
        if self._disposed:
            return False
        ticks = self._ticks
        return all(state in ticks for state in self._flatten(states))

    def switch(self, *groups: Any) -> str | None:
        """Return the first active state, scanning `groups` in order; None if none."""
        active = self._active_set
        for group in groups:
            for state in [group] if isinstance(group, str) else group:
                if state in active:
                    return state
        return None

    def will_be(self, *states: Any) -> bool:
        """Return whether a queued add mutation calls all of `states`."""
        return self.is_queued(ADD, self._flatten(states))[0]

    def will_be_removed(self, *states: Any) -> bool:
        """Return whether a queued remove mutation calls all of `states`."""
        return self.is_queued(REMOVE, self._flatten(states))[0]

    def is_queued(
        self,
        mtype: MutationType,
        states: Iterable[str],
        *,
        without_args: bool = False,
        strict: bool = False,
        min_queue_tick: int = 0,
        check: bool | None = None,
        position: str | None = None,
    ) -> tuple[bool, int, int]:
        """Find a queued mutation of type `mtype` calling all of `states`.

        Args:
            mtype: the mutation type.
            states: states the mutation must call.
            without_args: only mutations without args count.
            strict: the mutation must call exactly these states.
            min_queue_tick: only mutations with at least this queue tick count.
            check: when given, only checks (True) or only non-checks (False).
            position: "first" or "last" to look only at that end of the queue.

        Returns:
            (found, index in the queue, its queue tick), or (False, -1, 0).
        """
        wanted = set(states)
        items = list(self._queue)
        indexes = range(len(items))
        if position == "first":
            indexes = range(min(1, len(items)))
        elif position == "last":
            indexes = range(max(0, len(items) - 1), len(items))
        for i in indexes:
            item = items[i]
            if item.type is not mtype:
                continue
            if check is not None and item.check != check:
                continue
            if without_args and item.args:
                continue
            if min_queue_tick and item.queue_tick < min_queue_tick:
                continue
            called = set(item.called)
            if not wanted <= called or (strict and len(called) != len(wanted)):
                continue
            return True, i, item.queue_tick
        return False, -1, 0

    def active_states(self, states: Iterable[str] | None = None) -> list[str]:
        """Return the active states in stored order, or the active ones of `states`."""
        if self._disposed:
            return []
        if states is None:
            return self._active[:]
        active = self._active_set
        return [s for s in self._parse_states(states) if s in active]

    def tick(self, state: str) -> int:
        """Return the tick of `state`: odd means active."""
        tick = self._ticks.get(state)
        if tick is None:
            self._parse_states(state)
        return tick  # type: ignore[return-value]

    def time(self, states: Iterable[str] | None = None) -> list[int]:
        """Return ticks in state order, or in the order of `states`."""
        if self._disposed:
            return []
        names = self._compiled.names if states is None else self._parse_states(states)
        ticks = self._ticks
        return [ticks[n] for n in names]

    def clock(self, states: Iterable[str] | None = None) -> dict[str, int]:
        """Return ticks by name, of every state or of `states`."""
        if self._disposed:
            return {}
        names = self._compiled.names if states is None else self._parse_states(states)
        ticks = self._ticks
        return {n: ticks[n] for n in names}

    def state_names(self) -> tuple[str, ...]:
        """Return every state name in state order."""
        return self._compiled.names

    def index(self, state: str) -> int:
        """Return the position of `state` in the state order, or -1."""
        if self._disposed:
            return -1
        return self._compiled.index.get(state, -1)

    def queue_tick(self) -> int:
        """Return the queue tick: 1 plus the appended mutations taken off the queue."""
        return self._queue_tick

    def machine_tick(self) -> int:
        """Return how many times this machine was restored by :meth:`import_`."""
        return self._machine_tick

    def queue_len(self) -> int:
        """Return the number of queued mutations."""
        return len(self._queue)

    def queue(self) -> list[Mutation]:
        """Return a copy of the queue."""
        return list(self._queue)

    def transition(self) -> Transition | None:
        """Return the transition being executed, or None."""
        return self._transition

    def schema(self) -> dict[str, State]:
        """Return the sanitised schema, with ``Exception``."""
        return dict(self._compiled.schema)

    def err(self) -> BaseException | None:
        """Return the last error stored by ``add_err`` or a handler failure."""
        return self._err

    def is_err(self) -> bool:
        """Return whether ``Exception`` is active."""
        return EXCEPTION in self._active_set and not self._disposed

    def internal_errors(self) -> list[BaseException]:
        """Return recent handler timeouts, which do not add ``Exception``."""
        return list(self._internal_errors)

    def __str__(self) -> str:
        if self._disposed:
            return ""
        ticks = self._ticks
        active = self._active_set
        return (
            "("
            + " ".join(f"{n}:{ticks[n]}" for n in self._compiled.names if n in active)
            + ")"
        )

    def string_all(self) -> str:
        """Return active states, then inactive ones: ``(A:1) [B:0 Exception:0]``."""
        if self._disposed:
            return ""
        ticks = self._ticks
        active = self._active_set
        inactive = " ".join(
            f"{n}:{ticks[n]}" for n in self._compiled.names if n not in active
        )
        return f"{self} [{inactive}]"

    def inspect(self, states: Iterable[str] | None = None) -> str:
        """Return every state with its tick, flags and relations, one block each."""
        if self._disposed:
            return ""
        names = self._compiled.names if states is None else self._parse_states(states)
        schema = self._compiled.schema
        lines = []
        for name in names:
            state = schema[name]
            lines.append(f"{1 if name in self._active_set else 0} {name}")
            lines.append(f"    |{'Tick':<9}{self._ticks[name]}")
            if state.auto:
                lines.append(f"    |{'Auto':<9}true")
            if state.multi:
                lines.append(f"    |{'Multi':<9}true")
            for label, relation in (
                ("Add", state.add),
                ("Require", state.require),
                ("Remove", state.remove),
                ("After", state.after),
            ):
                if relation:
                    lines.append(f"    |{label:<9}{' '.join(relation)}")
        return "\n".join(lines) + "\n" if lines else ""

    # Waits

    def _new_waiter(
        self, kind: str, states: tuple[str, ...], values: Any, ctx: Any, key: Any
    ) -> Waiter:
        if key is not None:
            existing = self._waiter_keys.get(key)
            if existing is not None and not existing.done():
                return existing
        waiter = Waiter(self, kind, states, values, ctx)
        if self._disposed or (ctx is not None and ctx.done()):
            waiter._resolve()
            return waiter
        waiter.key = key
        if key is not None:
            self._waiter_keys[key] = waiter
        return waiter

    def _register(self, waiter: Waiter) -> Waiter:
        if not waiter.done() and waiter not in self._waiters:
            self._waiters.append(waiter)
            # A transition in another thread may have run between the check and
            # the registration; check again so the waiter cannot miss it.
            if self._is_satisfied(waiter):
                self._resolve_waiter(waiter)
                return waiter
            if self._log_level >= _OPS:
                self._emit(
                    LogLevel.OPS,
                    "[%s:new] %s",
                    (waiter.kind, " ".join(waiter.states)),
                )
        return waiter

    def _is_satisfied(self, waiter: Waiter) -> bool:
        kind = waiter.kind
        if kind == "when":
            return self._active_set.issuperset(waiter.states)
        if kind == "whenNot":
            return self._active_set.isdisjoint(waiter.states)
        if kind == "whenTime":
            ticks = self._ticks
            return all(ticks[name] >= tick for name, tick in waiter.values)
        if kind == "whenQueue":
            return self._queue_tick >= waiter.values
        return False

    def _drop_waiter(self, waiter: Waiter) -> None:
        for waiters in (
            self._waiters,
            self._args_waiters,
            self._queue_end_waiters,
            self._disposed_waiters,
        ):
            if waiter in waiters:
                waiters.remove(waiter)
        if waiter.key is not None and self._waiter_keys.get(waiter.key) is waiter:
            del self._waiter_keys[waiter.key]

    def _resolve_waiter(self, waiter: Waiter) -> None:
        self._drop_waiter(waiter)
        if self._log_level >= _OPS:
            self._emit(
                LogLevel.OPS, "[%s:match] %s", (waiter.kind, " ".join(waiter.states))
            )
        waiter._resolve()

    def when(self, states: str | Iterable[str], ctx: Any = None) -> Waiter:
        """Wait until all `states` are active at the same time."""
        called = self._parse_states(states)
        waiter = self._new_waiter(
            "when", called, None, ctx, ("when", frozenset(called), id(ctx))
        )
        if waiter.done() or waiter in self._waiters:
            return waiter
        waiter.matched = {s for s in called if s in self._active_set}
        if len(waiter.matched) == len(called):
            waiter._resolve()
            self._drop_waiter(waiter)
            return waiter
        return self._register(waiter)

    def when_not(self, states: str | Iterable[str], ctx: Any = None) -> Waiter:
        """Wait until all `states` are inactive at the same time."""
        called = self._parse_states(states)
        waiter = self._new_waiter(
            "whenNot", called, None, ctx, ("whenNot", frozenset(called), id(ctx))
        )
        if waiter.done() or waiter in self._waiters:
            return waiter
        waiter.matched = {s for s in called if s not in self._active_set}
        if len(waiter.matched) == len(called):
            waiter._resolve()
            self._drop_waiter(waiter)
            return waiter
        return self._register(waiter)

    def when_err(self, ctx: Any = None) -> Waiter:
        """Wait until ``Exception`` is active."""
        return self.when(EXCEPTION, ctx)

    def when_time(
        self, states: Iterable[str], times: Iterable[int], ctx: Any = None
    ) -> Waiter:
        """Wait until each state's tick reaches the matching value of `times`.

        Lists of different lengths, or empty ones, add ``Exception`` and return a
        resolved waiter, as in the reference.
        """
        names = list(states) if not isinstance(states, str) else [states]
        ticks = list(times)
        if not names or len(names) != len(ticks):
            self.add_err(
                ValueError(
                    f"when_time needs one time per state and at least one state, "
                    f"got states {names} and times {ticks}"
                )
            )
            waiter = Waiter(self, "whenTime", tuple(names), ticks, ctx)
            waiter._resolve()
            return waiter
        for tick in ticks:
            if not isinstance(tick, int) or tick < 0:
                raise TypeError(f"times must be non-negative ints, got {tick!r}")
        called = self._parse_states(names) if len(set(names)) == len(names) else None
        if called is None:
            for name in names:
                self._parse_states(name)
        pairs = tuple(zip(names, ticks, strict=True))
        waiter = self._new_waiter(
            "whenTime", tuple(names), pairs, ctx, ("whenTime", pairs, id(ctx))
        )
        if waiter.done() or waiter in self._waiters:
            return waiter
        current = self._ticks
        waiter.matched = {
            str(i) for i, (name, tick) in enumerate(pairs) if current[name] >= tick
        }
        if len(waiter.matched) == len(pairs):
            waiter._resolve()
            self._drop_waiter(waiter)
            return waiter
        return self._register(waiter)

    def when_ticks(self, state: str, ticks: int, ctx: Any = None) -> Waiter:
        """Wait until the tick of `state` grows by `ticks`."""
        self._parse_states(state)
        return self.when_time([state], [self._ticks[state] + ticks], ctx)

    def when_next_active(self, state: str, ctx: Any = None) -> Waiter:
        """Wait for the next activation of `state` (not the current one)."""
        self._parse_states(state)
        return self.when_ticks(state, 2 if state in self._active_set else 1, ctx)

    def when_args(self, state: str, args: Mapping[str, Any], ctx: Any = None) -> Waiter:
        """Wait until `state` is entered by a mutation whose args contain `args`.

        It resolves when the state's ``State`` handler slot runs (on activation or
        Multi re-entry) with args holding every key of `args` with an equal value.
        """
        called = self._parse_states(state)
        expected = self._parse_args(args) or {}
        waiter = self._new_waiter("whenArgs", called, dict(expected), ctx, None)
        if waiter.done():
            return waiter
        self._args_waiters.append(waiter)
        if ctx is not None:
            self._register(waiter)
        return waiter

    def _match_args_waiters(self, state: str, args: dict[str, Any] | None) -> None:
        if args is None:
            return
        for waiter in list(self._args_waiters):
            if waiter.states[0] != state:
                continue
            expected = waiter.values
            if all(k in args and args[k] == v for k, v in expected.items()):
                self._resolve_waiter(waiter)

    def when_queue(self, queue_tick: int) -> Waiter:
        """Wait until the queue tick reaches `queue_tick` (a queued result)."""
        waiter = Waiter(self, "whenQueue", (), int(queue_tick))
        if self._queue_tick >= queue_tick or self._disposed:
            waiter._resolve()
            return waiter
        return self._register(waiter)

    def when_queue_ends(self) -> Waiter:
        """Wait until the queue being processed is empty; resolved now when idle."""
        waiter = Waiter(self, "whenQueueEnds")
        if not self._processing or self._disposed:
            waiter._resolve()
            return waiter
        self._queue_end_waiters.append(waiter)
        return waiter

    def when_query(
        self, fn: Callable[[dict[str, int]], bool], ctx: Any = None
    ) -> Waiter:
        """Wait until ``fn(clock)`` returns true after some accepted transition."""
        waiter = self._new_waiter("whenQuery", (), fn, ctx, None)
        if waiter.done():
            return waiter
        return self._register(waiter)

    def when_disposed(self) -> Waiter:
        """Wait until the machine is disposed."""
        waiter = Waiter(self, "whenDisposed")
        if self._disposed:
            waiter._resolve()
            return waiter
        self._disposed_waiters.append(waiter)
        return waiter

    def _process_waiters(self, tx: Transition) -> None:
        """Resolve waiters after an accepted transition, from what it changed."""
        self._process_changes(tx.activated, tx.deactivated)

    def _process_changes(self, activated: list[str], deactivated: list[str]) -> None:
        ticks = self._ticks
        for waiter in list(self._waiters):
            if waiter.done():
                continue
            ctx = waiter.ctx
            if ctx is not None and ctx.done():
                self._resolve_waiter(waiter)
                continue
            kind = waiter.kind
            if kind == "when":
                states = waiter.states
                for state in activated:
                    if state in states:
                        waiter.matched.add(state)
                for state in deactivated:
                    waiter.matched.discard(state)
                if len(waiter.matched) == len(states):
                    self._resolve_waiter(waiter)
            elif kind == "whenNot":
                states = waiter.states
                for state in deactivated:
                    if state in states:
                        waiter.matched.add(state)
                for state in activated:
                    waiter.matched.discard(state)
                if len(waiter.matched) == len(states):
                    self._resolve_waiter(waiter)
            elif kind == "whenTime":
                changed = set(activated)
                changed.update(deactivated)
                for i, (name, tick) in enumerate(waiter.values):
                    if name in changed and ticks[name] >= tick:
                        waiter.matched.add(str(i))
                if len(waiter.matched) == len(waiter.values):
                    self._resolve_waiter(waiter)
            elif kind == "whenQueue":
                if self._queue_tick >= waiter.values:
                    self._resolve_waiter(waiter)
            elif kind == "whenQuery":
                if waiter.values(dict(ticks)):
                    self._resolve_waiter(waiter)

    def state_ctx(self, state: str) -> StateContext:
        """Return a context that ends when the tick of `state` changes.

        For an active state that is its deactivation (or Multi re-entry); for an
        inactive one, its next activation. Calls for the same state return the
        same context until it ends.
        """
        self._parse_states(state)
        ctx = self._contexts.get(state)
        if ctx is not None and not ctx.done():
            return ctx
        ctx = StateContext(self._id, state, self._ticks[state])
        if self._disposed:
            ctx._resolve()
            return ctx
        self._contexts[state] = ctx
        if self._ticks[state] != ctx.tick:
            # The tick changed in another thread before the context was stored.
            self._contexts.pop(state, None)
            ctx._resolve()
        if self._log_level >= _OPS:
            self._emit(LogLevel.OPS, "[ctx:new] %s", (state,))
        return ctx

    # Export, import, schema changes

    def export(self) -> dict[str, Any]:
        """Return the machine's clock as a JSON-serialisable record."""
        return {
            "id": self._id,
            "state_names": list(self._compiled.names),
            "time": [self._ticks[n] for n in self._compiled.names],
            "queue_tick": self._queue_tick,
            "machine_tick": self._machine_tick,
        }

    def import_(self, record: Mapping[str, Any]) -> None:
        """Restore a clock exported by :meth:`export` from a machine with this id.

        No transition or handler runs. The machine tick becomes the record's plus
        one; the queue tick is kept. A ``MachineRestored`` state, if declared, is
        added afterwards.

        Raises:
            ValueError: the record is for another id, another number of states,
                or names an unknown state; the machine is then unchanged.
        """
        try:
            rec_id = record["id"]
            names = list(record["state_names"])
            times = [int(t) for t in record["time"]]
            machine_tick = int(record["machine_tick"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"invalid export record for machine {self._id!r}: {err!r}; expected "
                f"the keys id, state_names, time, queue_tick, machine_tick"
            ) from None
        if rec_id != self._id:
            raise ValueError(
                f"export record is for machine {rec_id!r}, not {self._id!r}"
            )
        if len(names) != len(self._compiled.names) or len(times) != len(names):
            raise ValueError(
                f"export record has {len(names)} states and {len(times)} ticks, "
                f"machine {self._id!r} has {len(self._compiled.names)} states"
            )
        unknown = [n for n in names if n not in self._ticks]
        if unknown:
            raise ValueError(
                f"export record names unknown states {unknown} for machine {self._id!r}"
            )
        if self._transition is not None:
            raise RuntimeError("import_ cannot run during a transition")
        compiled = compile_schema(self._compiled.schema, names, strict=False)
        old_ticks = self._ticks
        self._compiled = compiled
        self._ticks = dict(zip(names, times, strict=True))
        self._active = [n for n in names if self._ticks[n] % 2 == 1]
        self._active_set = frozenset(self._active)
        changed = [n for n in names if self._ticks[n] != old_ticks[n]]
        activated = [n for n in changed if self._ticks[n] % 2 == 1]
        deactivated = [n for n in changed if self._ticks[n] % 2 == 0]
        for state in changed:
            ctx = self._contexts.pop(state, None)
            if ctx is not None:
                ctx._resolve()
        self._machine_tick = machine_tick + 1
        if self._dispatch is not None:
            self._dispatch = DispatchTable(self._groups)
        if self._waiters:
            self._process_changes(activated, deactivated)
        if self._log_level >= _CHANGES:
            self._emit(LogLevel.CHANGES, "[import] %s", (str(self),))
        if _RESTORED_STATE in self._ticks:
            self.add(_RESTORED_STATE)

    def set_schema(
        self,
        schema: Mapping[str, State | Mapping[str, Any]],
        names: Iterable[str],
    ) -> None:
        """Replace the schema with a larger one, keeping the ticks of known states.

        Raises:
            RuntimeError: called during a transition.
            SchemaError: the new schema has no more states than the current one,
                or `names` does not list every state.
        """
        if self._transition is not None:
            raise RuntimeError("set_schema cannot run during a transition")
        compiled = compile_schema(schema, names, strict=True)
        if len(compiled.names) <= len(self._compiled.names):
            raise SchemaError(
                f"the new schema must have more states than the current "
                f"{len(self._compiled.names)}, got {len(compiled.names)}"
            )
        old = self._compiled.schema
        self._compiled = compiled
        self._ticks = {n: self._ticks.get(n, 0) for n in compiled.names}
        if self._dispatch is not None:
            self._dispatch = DispatchTable(self._groups)
        for tracer in self._tracers:
            tracer.schema_change(self, dict(old))

    def set_groups(
        self, groups: Mapping[str, Iterable[str]], order: Iterable[str] | None = None
    ) -> None:
        """Name groups of states, for tooling; groups change no behaviour."""
        parsed = {name: list(self._parse_states(list(s))) for name, s in groups.items()}
        self._groups_meta = (parsed, list(order) if order is not None else list(parsed))

    def groups(self) -> tuple[dict[str, list[str]], list[str]]:
        """Return the groups set by :meth:`set_groups` and their order."""
        groups, order = self._groups_meta
        return {k: list(v) for k, v in groups.items()}, list(order)

    # Tracers, logging, breakpoints

    def add_tracer(self, tracer: Tracer) -> None:
        """Attach a tracer."""
        self._tracers.append(tracer)
        self._group_tracers_by_hook()
        tracer.machine_init(self)

    def remove_tracer(self, tracer: Tracer) -> None:
        """Detach a tracer."""
        self._tracers.remove(tracer)
        self._group_tracers_by_hook()

    def _group_tracers_by_hook(self) -> None:
        """Store which tracers define their own transition_start and queue_end."""
        self._start_tracers = [
            t for t in self._tracers if _overrides(t, "transition_start")
        ]
        self._queue_end_tracers = [
            t for t in self._tracers if _overrides(t, "queue_end")
        ]

    def tracers(self) -> list[Tracer]:
        """Return the attached tracers."""
        return list(self._tracers)

    def set_log_level(self, level: LogLevel | int) -> None:
        """Set how much this machine logs."""
        self._log_level = LogLevel(level)

    def log_level(self) -> LogLevel:
        """Return how much this machine logs."""
        return self._log_level

    def log(self, message: str, *args: Any) -> None:
        """Log a message of user code, shown from log level EXTERNAL."""
        if self._log_level >= _EXTERNAL:
            text = (message % args if args else message).replace("\n", " ")
            self._emit(LogLevel.EXTERNAL, "[exter] %s", (text,))

    def _emit(self, level: int, message: str, args: tuple[Any, ...]) -> None:
        tx = self._transition
        if tx is not None and self._tracers:
            # Tracers read a transition's log lines, so they are kept only then.
            line = message % args if args else message
            if tx.log_lines is None:
                tx.log_lines = [line]
            else:
                tx.log_lines.append(line)
        std_level = _STD_LEVELS.get(LogLevel(level), logging.DEBUG)
        if logger.isEnabledFor(std_level):
            logger.log(
                std_level,
                "[%s] " + message,
                self._id[:5],
                *args,
                extra={"mach_id": self._id, "am_level": int(level)},
            )

    def _log_error(self, message: str, *args: Any, exc: Any = None) -> None:
        logger.error(message, *args, extra={"mach_id": self._id})

    def _internal_error(self, err: BaseException) -> None:
        self._internal_errors.append(err)
        logger.warning("%s", err, extra={"mach_id": self._id})

    def _deadline_exceeded(self, err: BaseException) -> None:
        """A handler passed the deadline: clear the queue, add Exception, back off."""
        with self._lock:
            dropped = len(self._queue)
            self._queue.clear()
            self._next_tick = self._queue_tick + 1
        self._log_error(
            "machine %s: handler deadline passed, %d queued mutations dropped, "
            "mutations rejected for %.1f s",
            self._id,
            dropped,
            self._handler_backoff,
        )
        self._err = err
        self._prepend(Mutation(ADD, (EXCEPTION,), {"err": err}))
        self._backoff_until = time.monotonic() + self._handler_backoff

    def add_breakpoint(
        self,
        added: Iterable[str] | str,
        removed: Iterable[str] | str = (),
        strict: bool = False,
    ) -> None:
        """Log ``[breakpoint]`` when a matching add or remove mutation is queued.

        Set a debugger breakpoint in ``Machine._breakpoint_hit`` to stop there.
        With `strict`, an add is skipped when its states are already active and a
        remove when they are already inactive.
        """
        added_states = self._parse_states(added) if added else ()
        removed_states = self._parse_states(removed) if removed else ()
        self._breakpoints.append((added_states, removed_states, strict))

    def _check_breakpoints(self, mutation: Mutation) -> None:
        called = mutation.called
        for added, removed, strict in self._breakpoints:
            if mutation.type is ADD and added and called == added:
                if strict and self.is_active(*added):
                    continue
                self._breakpoint_hit(mutation)
            elif mutation.type is REMOVE and removed and called == removed:
                if strict and self._active_set.isdisjoint(removed):
                    continue
                self._breakpoint_hit(mutation)

    def _breakpoint_hit(self, mutation: Mutation) -> None:
        if self._log_level >= _CHANGES:
            self._emit(LogLevel.CHANGES, "[breakpoint] %s", (repr(mutation),))

    # Disposal

    def on_dispose(self, fn: Callable[[str], Any]) -> None:
        """Call `fn(machine_id)` when the machine is disposed."""
        self._dispose_callbacks.append(fn)

    def dispose(self) -> None:
        """Stop the machine: remove ``Start`` if declared, then end all waits.

        Afterwards every mutation is canceled and the views are empty. Called from
        a handler, the disposal finishes when the queue is drained.
        """
        if self._disposing:
            return
        if _START_STATE in self._ticks and _START_STATE in self._active_set:
            self.remove(_START_STATE)
        self._disposing = True
        if not self._processing:
            self._finish_dispose()

    def is_disposed(self) -> bool:
        """Return whether :meth:`dispose` finished."""
        return self._disposed

    def _finish_dispose(self) -> None:
        self._disposed = True
        with self._lock:
            self._queue.clear()
            self._next_tick = self._queue_tick + 1
        for tracer in self._tracers:
            tracer.machine_dispose(self._id)
        self._groups = []
        self._dispatch = None
        waiters = self._waiters + self._args_waiters + self._queue_end_waiters
        self._waiters = []
        self._args_waiters = []
        self._queue_end_waiters = []
        self._waiter_keys.clear()
        for waiter in waiters:
            waiter._resolve()
        contexts = list(self._contexts.values())
        self._contexts.clear()
        for ctx in contexts:
            ctx._resolve()
        for task in list(self._tasks):
            task.cancel()
        for fn in self._dispose_callbacks:
            try:
                fn(self._id)
            except Exception as err:
                self._log_error(
                    "dispose callback of machine %s raised %r", self._id, err
                )
        disposed = self._disposed_waiters
        self._disposed_waiters = []
        for waiter in disposed:
            waiter._resolve()

"""The transition: resolving relations, running handlers, applying clocks.

One :class:`Transition` executes one mutation taken off the machine's queue. The
order of steps and of handlers follows asyncmachine-go exactly, because programs
rely on it:

1. resolve the target states from the called and active states and the relations;
2. accept or reject: every called state must be a target (auto mutations accept
   the targets they can get);
3. negotiation handlers (Exit, Enter, self, state-state, AnyEnter), any of which
   can cancel;
4. apply the targets: tick the clocks and end the changed states' contexts;
5. final handlers (End, State, AnyState), then queue the auto mutation.
"""

from __future__ import annotations

import itertools
import time
import traceback
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, cast

from ._errors import HandlerTimeoutError
from ._schema import EXCEPTION
from ._types import ADD, CANCELED, EXECUTED, REMOVE, Event, LogLevel, Mutation

if TYPE_CHECKING:
    from ._handlers import DispatchTable
    from ._machine import Machine

__all__ = ["Transition"]

# LogLevel members as module constants. In CPython 3.11 reading an attribute
# of an Enum class goes through the __getattr__ hook of EnumType, which costs
# several times a global lookup, and every mutation compares log levels.
_OPS = LogLevel.OPS
_CHANGES = LogLevel.CHANGES
_EVERYTHING = LogLevel.EVERYTHING
_ids = itertools.count(1)
_HEALTH_STATES = ("Healthcheck", "Heartbeat")
# Resolution outcomes kept per schema; the cache is emptied when full. 4 groups
# of 5 exclusive states give 10,000 plans, about 2.5 MB with shared parts.
_PLAN_CACHE_SIZE = 16384
# Empty placeholders for the state lists and sets until run() sets them. They
# are immutable, so one object serves every transition.
_NO_STATES: Any = ()
_NO_STATE_SET: frozenset[str] = frozenset()
# Hot paths build events with object.__new__ and four slot stores, which is
# cheaper than Event(...) because that runs __init__ in a new Python frame.
_new_event = object.__new__


class _Cancel(Exception):
    """Stops the negotiation phase early: a handler rejected the transition."""


def _dedup(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


class Transition:
    """One transition: its mutation, the states before and after, and its result."""

    __slots__ = (
        "seq",
        "machine",
        "mutation",
        "called",
        "_called_set",
        "before",
        "before_set",
        "ticks_before",
        "targets",
        "targets_set",
        "exits",
        "enters",
        "accepted",
        "canceled",
        "canceled_by",
        "completed",
        "applied",
        "tick_changed",
        "activated",
        "deactivated",
        "error",
        "_args",
        "_ticks_after",
        "log_lines",
        "_mark",
    )

    def __init__(self, machine: Machine, mutation: Mutation) -> None:
        self.seq = next(_ids)
        self.machine = machine
        self.mutation = mutation
        self.called = mutation.called
        self._called_set: frozenset[str] | None = None
        # A transition replaces the machine's active list, active set and ticks
        # dict with new objects and never changes them in place, so the objects
        # themselves serve as the snapshot of the states before. Readers must
        # not change them either (clock_before returns a copy).
        self.before: list[str] = machine._active
        self.before_set: AbstractSet[str] = machine._active_set
        self.ticks_before: dict[str, int] = machine._ticks
        self.targets: list[str] = _NO_STATES
        self.targets_set: AbstractSet[str] = _NO_STATE_SET
        self.exits: list[str] = _NO_STATES
        self.enters: list[str] = _NO_STATES
        self.accepted = False
        self.canceled = False
        self.canceled_by: str | None = None
        self.completed = False
        self.applied = False
        self.tick_changed = False
        self.activated: list[str] = _NO_STATES
        self.deactivated: list[str] = _NO_STATES
        self.error: BaseException | None = None
        args = mutation.args
        if args is None and not mutation.auto:
            args = mutation.args = {}
        self._args = args
        self._ticks_after: dict[str, int] | None = None
        self.log_lines: list[str] | None = None
        # perf_counter() after the last handler, to time handlers with one read.
        self._mark = 0.0

    # Public views

    @property
    def called_set(self) -> frozenset[str]:
        """The called states as a set."""
        called_set = self._called_set
        if called_set is None:
            called_set = self._called_set = frozenset(self.called)
        return called_set

    @property
    def id(self) -> str:
        """A process-wide unique id of this transition."""
        return f"{self.seq:x}"

    @property
    def type(self) -> Any:
        """The mutation type (``am.MutationType``)."""
        return self.mutation.type

    @property
    def is_auto(self) -> bool:
        """Whether this transition runs the auto states."""
        return self.mutation.auto

    @property
    def is_check(self) -> bool:
        """Whether this is a dry run from ``can_add`` or ``can_remove``."""
        return self.mutation.check

    @property
    def args(self) -> dict[str, Any]:
        """The mutation's args (an empty dict for auto transitions)."""
        return self._args if self._args is not None else {}

    def called_states(self) -> list[str]:
        """Return the called states in call order."""
        return list(self.called)

    def target_states(self) -> list[str]:
        """Return the current target states in state order."""
        index = self.machine._compiled.index
        return sorted(self.targets, key=index.__getitem__)

    def before_states(self) -> list[str]:
        """Return the states active before the transition, in state order."""
        index = self.machine._compiled.index
        return sorted(self.before, key=index.__getitem__)

    @property
    def clock_before(self) -> dict[str, int]:
        """Ticks of every state before the transition."""
        return dict(self.ticks_before)

    @property
    def clock_after(self) -> dict[str, int]:
        """Ticks after the transition (current ticks while it runs)."""
        if self._ticks_after is not None:
            return dict(self._ticks_after)
        return dict(self.machine._ticks)

    @property
    def time_before(self) -> list[int]:
        """Ticks before the transition, in state order."""
        ticks = self.ticks_before
        return [ticks[n] for n in self.machine._compiled.names]

    @property
    def time_after(self) -> list[int]:
        """Ticks after the transition (current ticks while it runs), in state order."""
        ticks = self._ticks_after or self.machine._ticks
        return [ticks[n] for n in self.machine._compiled.names]

    def __repr__(self) -> str:
        m = self.mutation
        return (
            f"<Transition {self.id} {m.type.value} {' '.join(self.called)}"
            f" -> {' '.join(self.targets)}>"
        )

    # Target resolution

    def _states_to_set(self, mtype: Any, called: Any) -> list[str]:
        """Return the states to resolve, without duplicates: called ones first."""
        if mtype is ADD:
            before = self.before
            called_set = self.called_set if called is self.called else set(called)
            if called_set.isdisjoint(before):
                return [*called, *before]
            return [*called, *[s for s in before if s not in called_set]]
        if mtype is REMOVE:
            called_set = self.called_set
            return [s for s in self.before if s not in called_set]
        return list(called)

    def _expand_add(self, names: list[str]) -> list[str]:
        """Append the Add targets of each name, one level deep."""
        compiled = self.machine._compiled
        adds = compiled.adds
        multi = compiled.multi
        before_set = self.before_set
        out = names[:]
        is_remove = self.mutation.type is REMOVE
        for name in dict.fromkeys(names):
            targets = adds.get(name)
            if targets is None:
                continue
            # Already active states do not imply again, unless they are Multi.
            if name in before_set and name not in multi:
                continue
            if is_remove:
                called_set = self.called_set
                out.extend(t for t in targets if t not in called_set)
            else:
                out.extend(targets)
        return out

    def _drop_missing_requires(self, names: list[str]) -> list[str]:
        requires = self.machine._compiled.requires
        if not requires:
            return names
        present = set(names)
        for name in names:
            required = requires.get(name)
            if required is not None and not present.issuperset(required):
                break
        else:
            return names
        while True:
            present = set(names)
            kept = []
            for name in names:
                required = requires.get(name)
                if required is None:
                    kept.append(name)
                    continue
                missing = [r for r in required if r not in present]
                if missing:
                    if self.machine._log_level >= _OPS:
                        self._log(
                            LogLevel.OPS, "[reject] %s(-%s)", name, " -".join(missing)
                        )
                else:
                    kept.append(name)
            if len(kept) == len(names):
                return kept
            names = kept

    def _resolve(self, to_set: list[str]) -> list[str]:
        compiled = self.machine._compiled
        names = to_set
        if compiled.has_adds:
            names = _dedup(self._expand_add(names))
        names = self._drop_missing_requires(names)

        if compiled.has_removes:
            # Scan from the back: implied, then active, then called states in
            # reverse, so a state scanned later wins a mutual Remove conflict.
            present = set(names)
            blocked: set[str] = set()
            survivors = []
            removed_by = compiled.removed_by
            for name in reversed(names):
                blockers = removed_by.get(name)
                if blockers is not None and not blockers.isdisjoint(present):
                    active_blockers = (blockers & present) - blocked
                    if active_blockers:
                        blocked.add(name)
                        if self.machine._log_level >= _OPS:
                            level = (
                                LogLevel.OPS
                                if name in self.before_set
                                else LogLevel.DECISIONS
                            )
                            self._log(
                                level,
                                "[rel:remove] %s by %s",
                                name,
                                " ".join(sorted(active_blockers)),
                            )
                        continue
                survivors.append(name)
            # Survivors never remove each other, so this only filters new names.
            removed_by_survivors: set[str] = set()
            if compiled.has_adds:
                removes = compiled.removes
                for name in survivors:
                    removed = removes.get(name)
                    if removed is not None:
                        removed_by_survivors |= removed
        else:
            survivors = names[::-1]
            removed_by_survivors = set()

        if compiled.has_adds:
            expanded = self._expand_add(survivors)
            if removed_by_survivors:
                expanded = [n for n in expanded if n not in removed_by_survivors]
            expanded = _dedup(expanded)
        else:
            expanded = survivors
        expanded.reverse()
        targets = self._drop_missing_requires(expanded)
        return self._sort_for_handlers(targets)

    def _sort_for_handlers(self, names: list[str]) -> list[str]:
        if len(names) < 2:
            return names
        compiled = self.machine._compiled
        key = compiled.topo_key
        if key is not None:
            names.sort(key=key.__getitem__)
        if compiled.has_after:
            afters = compiled.afters
            empty: frozenset[str] = frozenset()
            # A pairwise insertion sort: only neighbours are compared, and the
            # predicate is not transitive, as in the reference.
            for i in range(1, len(names)):
                j = i
                while j > 0:
                    x = names[j]
                    y = names[j - 1]
                    if x in afters.get(y, empty) and y not in afters.get(x, empty):
                        names[j] = y
                        names[j - 1] = x
                        j -= 1
                    else:
                        break
        return names

    # Execution

    def run(self) -> Any:
        """Execute the transition and return its result."""
        mach = self.machine
        mutation = self.mutation
        compiled = mach._compiled
        mtype = mutation.type
        called = self.called
        log_level = mach._log_level
        if mutation.clock is not None:
            return self._run_sync()

        # Resolution depends only on the mutation and the ordered active states,
        # so its outcome is cached per schema unless it must log its reasoning.
        if log_level >= _OPS:
            self._log_mutation()
            plan = self._plan(self._states_to_set(mtype, called))
        else:
            before = tuple(self.before)
            cached = compiled.plans.get((mtype, called, before))
            if cached is not None:
                plan = cached
            else:
                plan = self._plan(self._states_to_set(mtype, called))
                plans = compiled.plans
                if len(plans) >= _PLAN_CACHE_SIZE:
                    plans.clear()
                # The active states are usually the targets of an earlier
                # plan, which plan_parts stores once, so the key reuses them.
                shared = compiled.plan_parts.get(before)
                if shared is not None:
                    before = shared[0]
                plans[mtype, called, before] = plan
        targets_tuple, targets_set, not_accepted, exits, enters, steps = plan
        self.targets = list(targets_tuple)
        # Only auto transitions drop targets during negotiation, so the others
        # can use the plan's shared set as it is.
        self.targets_set = set(targets_set) if mutation.auto else targets_set
        self.exits = exits
        self.enters = enters
        if log_level >= _OPS and mtype is not REMOVE:
            self._log_implied()

        # Acceptance
        if mtype is REMOVE or not not_accepted:
            accepted = True
        elif mutation.auto:
            accepted = len(not_accepted) < len(called)
        else:
            accepted = mutation.check and not compiled.multi.isdisjoint(called)

        if not accepted:
            self._log(LogLevel.OPS, "[cancel:reject] %s", " ".join(not_accepted))
        tracers = mach._start_tracers
        if tracers:
            for tracer in tracers:
                tracer.transition_start(self)
        if not accepted:
            self.canceled = True
            return self._finish(CANCELED)

        table = mach._dispatch
        if (
            table is not None
            and not mutation.auto
            and log_level < _OPS
            and mach._log_level < _OPS
        ):
            # A tracer may have changed the log level, hence the second check.
            # The pairs lookup is has_pairs() with its cache check inlined.
            pairs_for = table._pairs_for
            if pairs_for is not None and pairs_for[0] is compiled.names:
                has_pairs = pairs_for[1]
            else:
                has_pairs = table.has_pairs(compiled.names)
            if not has_pairs:
                return self._run_plain(table, steps)
        return self._run_general(log_level)

    def _log_mutation(self) -> None:
        mutation = self.mutation
        called = " ".join(self.called)
        if mutation.auto:
            self._log(LogLevel.DECISIONS, "[add:auto] %s", called)
        else:
            self._log(LogLevel.OPS, "[%s] %s", mutation.type.value, called)
        src = mutation.source
        if src is not None:
            self._log(
                LogLevel.OPS,
                "[source] %s/%s/%d",
                src.mach_id,
                src.tx_id,
                src.mach_time,
            )

    def _log_implied(self) -> None:
        called_set = self.called_set
        implied = [t for t in self.targets if t not in called_set]
        implied = [t for t in implied if t not in self.before_set]
        if implied:
            self._log(LogLevel.OPS, "[implied] %s", " ".join(implied))

    def _run_general(self, log_level: int) -> Any:
        """Run an accepted transition from negotiation on, for every case.

        `log_level` is the machine's log level when the transition started.
        """
        mach = self.machine
        mutation = self.mutation
        compiled = mach._compiled
        mtype = mutation.type
        called = self.called
        dispatch = mach._dispatch is not None or log_level >= _EVERYTHING
        if dispatch and not self._negotiate():
            return self._finish(CANCELED)

        if mutation.check:
            self.accepted = True
            return self._finish(EXECUTED)

        if mutation.auto:
            rejected = [s for s in called if s not in self.targets_set]
            if rejected:
                kept = [s for s in called if s in self.targets_set]
                targets_tuple, targets_set, _, exits, enters, _ = self._plan(
                    self._states_to_set(ADD, kept)
                )
                self.targets = list(targets_tuple)
                self.targets_set = set(targets_set)
                self.exits = exits
                self.enters = enters

        self._apply()
        self.accepted = True

        if dispatch or mach._args_waiters:
            self._final_phase(dispatch)

        table = mach._dispatch
        if not self.canceled and (table is not None or log_level >= _EVERYTHING):
            entries = table.cache.get("AnyState") if table is not None else None
            if entries is None or entries or log_level >= _EVERYTHING:
                self._call_any_state()

        if self.canceled:
            self.accepted = False
        elif (
            self.tick_changed
            and not mutation.auto
            and not mach._disposing
            and compiled.auto_states
            and not (mtype is ADD and len(called) == 1 and called[0] in _HEALTH_STATES)
        ):
            mach._queue_auto()

        return self._finish(self._result())

    def _run_plain(self, table: DispatchTable, steps: tuple[Any, ...]) -> Any:
        """Run an accepted transition that needs no special handling.

        It is neither auto nor a clock sync, has bound handlers but no pair
        handlers ("XY", "XX"), and logs less than OPS. It calls the same
        handlers in the same order as :meth:`_negotiate` and
        :meth:`_final_phase`, from the names precomputed in `steps`, with the
        calls inlined, because this is the path of most mutations.
        """
        mach = self.machine
        mutation = self.mutation
        negotiation, finals = steps
        # Only auto transitions have no args dict, and they never come here.
        args: dict[str, Any] = self._args  # type: ignore[assignment]
        timeout = mach._handler_timeout
        perf_counter = time.perf_counter
        mark = perf_counter() if timeout else 0.0
        cache = table.cache
        for name in negotiation:
            entries = cache.get(name)
            if entries is None:
                entries = table.get(name)
            if not entries:
                continue
            if mach._log_level >= _OPS:
                self._log(LogLevel.OPS, "[handler] %s", name)
            event = _new_event(Event)
            event.name = name
            event.machine = mach
            event.transition = self
            event.args = args
            for obj, func, _is_async in entries:
                try:
                    result = func(obj, event) if obj is not None else func(event)
                except Exception as err:
                    if not mach._catch_panics:
                        raise
                    self._panic(name, err, final=False)
                    return self._finish(CANCELED)
                if timeout:
                    now = perf_counter()
                    elapsed = now - mark
                    mark = now
                    if elapsed > timeout:
                        self._timeout(name, elapsed, final=False)
                        return self._finish(CANCELED)
                if result is not None and not result:
                    self._cancel(name)
                    return self._finish(CANCELED)

        if mutation.check:
            self.accepted = True
            return self._finish(EXECUTED)

        self._apply_plan()
        self.accepted = True

        current = mach._dispatch
        if current is None or mach._log_level >= _OPS:
            # A handler detached the handlers or raised the log level.
            self._final_phase(True)
        else:
            self._final_steps(current, finals)

        if not self.canceled:
            current = mach._dispatch
            if current is not None:
                entries = current.cache.get("AnyState")
                if entries is None or entries:
                    self._call_any_state()

        called = self.called
        if self.canceled:
            self.accepted = False
            result = CANCELED
        else:
            if (
                self.tick_changed
                and not mach._disposing
                and mach._compiled.auto_states
                and not (
                    mutation.type is ADD
                    and len(called) == 1
                    and called[0] in _HEALTH_STATES
                )
            ):
                mach._queue_auto()
            if mach._active_set is self.targets_set and mutation.type is not REMOVE:
                # Every target is active, as _result would find.
                result = EXECUTED
            else:
                result = self._result()
        self.completed = True
        if mach._tracers:
            self._trace_end(result)
        return result

    def _final_steps(
        self, table: DispatchTable, finals: tuple[tuple[str, str, bool], ...]
    ) -> None:
        """Call the End and State handlers of `finals`, as :meth:`_final_phase`."""
        mach = self.machine
        # Only auto transitions have no args dict, and they never come here.
        args: dict[str, Any] = self._args  # type: ignore[assignment]
        timeout = mach._handler_timeout
        perf_counter = time.perf_counter
        mark = perf_counter() if timeout else 0.0
        cache = table.cache
        position = 0
        try:
            for name, state, is_state_handler in finals:
                entries = cache.get(name)
                if entries is None:
                    entries = table.get(name)
                if entries:
                    if mach._log_level >= _OPS:
                        self._log(LogLevel.OPS, "[handler] %s", name)
                    event = _new_event(Event)
                    event.name = name
                    event.machine = mach
                    event.transition = self
                    event.args = args
                    for obj, func, is_async in entries:
                        try:
                            result = (
                                func(obj, event) if obj is not None else func(event)
                            )
                            if is_async:
                                mach._start_handler_task(result, state, name)
                        except Exception as err:
                            if not mach._catch_panics:
                                raise
                            self._panic(name, err, final=True)
                            raise _Cancel() from None
                        if timeout:
                            now = perf_counter()
                            elapsed = now - mark
                            mark = now
                            if elapsed > timeout:
                                self._timeout(name, elapsed, final=True)
                                raise _Cancel()
                if is_state_handler and mach._args_waiters:
                    mach._match_args_waiters(state, args)
                position += 1
            # The AnyState handler, called next, times itself from this mark.
            self._mark = mark
        except _Cancel:
            # As in _final_phase: a failed State handler reverts its state and
            # every later one, a failed End handler keeps all targets.
            first_state = len(self.exits)
            revert = [s for _, s, _ in finals[position:]]
            self._recover(revert if position >= first_state else [])

    def _run_sync(self) -> Any:
        """Apply ticks received from a state source, as one synthetic transition.

        States whose tick grew to an odd value were activated, and a growth of 2
        or more while staying odd is a Multi re-entry. States whose tick grew to
        an even value were deactivated. Only final handlers run, because the
        source already negotiated the change.
        """
        mach = self.machine
        compiled = mach._compiled
        new_ticks, queue_tick, machine_tick = self.mutation.clock  # type: ignore[misc]
        # Copy on write, as in _apply.
        ticks = mach._ticks = mach._ticks.copy()
        activated = []
        deactivated = []
        for name in compiled.names:
            new = new_ticks.get(name)
            if new is None:
                continue
            old = ticks[name]
            if new == old:
                continue
            ticks[name] = new
            if new % 2 == 1:
                activated.append(name)
            elif old % 2 == 1 or new - old >= 2:
                # Went inactive, or flashed active and inactive between syncs.
                deactivated.append(name)
        if queue_tick is not None:
            mach._queue_tick = queue_tick
            mach._next_tick = max(mach._next_tick, queue_tick + 1)
        if machine_tick is not None:
            mach._machine_tick = machine_tick
        active = [n for n in compiled.names if ticks[n] % 2 == 1]
        mach._active = active
        mach._active_set = frozenset(active)
        self.called = tuple(activated)
        self._called_set = frozenset(activated)
        self.targets = active[:]
        self.targets_set = set(active)
        self.exits = deactivated
        self.enters = activated
        self.activated = activated
        self.deactivated = deactivated
        self.tick_changed = bool(activated or deactivated)
        self.applied = True
        self.accepted = True
        if mach._start_tracers:
            for tracer in mach._start_tracers:
                tracer.transition_start(self)
        if mach._log_level >= _CHANGES and self.tick_changed:
            parts = [f"+{s}" for s in activated] + [f"-{s}" for s in deactivated]
            self._log(LogLevel.CHANGES, "[sync] %s", " ".join(parts))
        contexts = mach._contexts
        if contexts:
            for state in activated + deactivated:
                ctx = contexts.pop(state, None)
                if ctx is not None:
                    ctx._resolve()
        dispatch = mach._dispatch is not None
        if self.tick_changed and (dispatch or mach._args_waiters):
            self._final_phase(dispatch)
            if not self.canceled and dispatch:
                self._call_any_state()
        # A failed network handler does not undo what the source decided.
        self.canceled = False
        return self._finish(EXECUTED)

    def _result(self) -> Any:
        if self.canceled:
            return CANCELED
        mutation = self.mutation
        active = self.machine._active_set
        if mutation.type is REMOVE:
            for state in self.called:
                if state in active:
                    return CANCELED
            return EXECUTED
        if mutation.auto:
            return EXECUTED if len(self.targets) > len(self.before) else CANCELED
        for state in self.targets:
            if state not in active:
                return CANCELED
        return EXECUTED

    def _finish(self, result: Any) -> Any:
        self.completed = True
        mach = self.machine
        if mach._tracers:
            self._trace_end(result)
        return result

    def _trace_end(self, result: Any) -> None:
        mach = self.machine
        if mach._tracers:
            # Every change of the ticks makes a new dict (copy on write), so
            # this one stays as it is when later transitions run.
            self._ticks_after = mach._ticks
            for tracer in mach._tracers:
                tracer.transition_end(self, result)

    def _plan(self, to_set: list[str]) -> tuple[Any, ...]:
        """Resolve targets and return the plan of the transition.

        The plan is (targets, targets as a set, called states not accepted,
        exits, enters, handler steps), and :meth:`_steps` describes the last
        one. Plans are cached and shared, so none of their parts may change.
        """
        compiled = self.machine._compiled
        targets = tuple(self._resolve(to_set))
        parts = compiled.plan_parts
        if len(parts) >= _PLAN_CACHE_SIZE:
            parts.clear()
        # Many plans have equal targets or steps, and storing one copy of each
        # keeps a full plan cache small.
        shared = parts.get(targets)
        if shared is None:
            shared = parts[targets] = (targets, frozenset(targets))
        targets, targets_set = shared
        not_accepted = tuple(s for s in self.called if s not in targets_set)
        exits = [s for s in self.before if s not in targets_set]
        exits = self._sort_for_handlers(exits)
        before_set = self.before_set
        multi = compiled.multi
        called_set = self.called_set
        enters = [
            s
            for s in targets
            if s not in before_set or (s in multi and s in called_set)
        ]
        steps_key = ("steps", tuple(exits), tuple(enters))
        steps = parts.get(steps_key)
        if steps is None:
            steps = parts[steps_key] = (exits, enters, self._steps(exits, enters))
        exits, enters, handler_steps = steps
        return targets, targets_set, not_accepted, exits, enters, handler_steps

    def _steps(
        self, exits: list[str], enters: list[str]
    ) -> tuple[tuple[str, ...], tuple[tuple[str, str, bool], ...]]:
        """Return the handler names a transition without pair handlers calls.

        The first tuple holds the negotiation handlers in call order (Exit,
        Enter, AnyEnter). The second holds the final ones before AnyState as
        (name, state, whether it is a State handler): End, then State.
        """
        compiled = self.machine._compiled
        negotiation = (
            *[compiled.exit_names[s] for s in exits],
            *[compiled.enter_names[s] for s in enters],
            "AnyEnter",
        )
        finals = (
            *[(compiled.end_names[s], s, False) for s in exits],
            *[(compiled.state_names[s], s, True) for s in enters],
        )
        return negotiation, finals

    def _negotiate(self) -> bool:
        """Run the negotiation handlers; return False if the transition is canceled."""
        mach = self.machine
        compiled = mach._compiled
        dispatch = mach._dispatch
        if dispatch is None:
            # Only reached at log level EVERYTHING: log the names, call nothing.
            for name in self._negotiation_names():
                self._log(LogLevel.EVERYTHING, "[handle] %s", name)
            if self.mutation.auto and not self.targets:
                self._cancel("no targets left")
                return False
            return True
        verbose = mach._log_level >= _EVERYTHING
        lookup = dispatch.get
        call = self._call_negotiation
        if mach._handler_timeout:
            self._mark = time.perf_counter()
        targets_set = self.targets_set
        try:
            exit_names = compiled.exit_names
            for state in self.exits:
                name = exit_names[state]
                if verbose:
                    self._log(LogLevel.EVERYTHING, "[handle] %s", name)
                entries = lookup(name)
                if entries:
                    call(name, entries, None)
            enter_names = compiled.enter_names
            for state in self.enters:
                if state not in targets_set:
                    continue
                name = enter_names[state]
                if verbose:
                    self._log(LogLevel.EVERYTHING, "[handle] %s", name)
                entries = lookup(name)
                if entries:
                    call(name, entries, state)
            pairs = dispatch.pair_names
            names = compiled.names
            before_set = self.before_set
            has_pairs = verbose or dispatch.has_pairs(names)
            if has_pairs and self.mutation.type is not REMOVE:
                for state in list(self.targets):
                    if state not in before_set or state not in targets_set:
                        continue
                    if verbose:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", state + state)
                    row = pairs.get(state)
                    if row is None:
                        row = dispatch.pair_row(state, names)
                    if state in row:
                        name = row[state]
                        call(name, lookup(name), state)
            for x in self.before if has_pairs else ():
                row = pairs.get(x)
                if row is None:
                    row = dispatch.pair_row(x, names)
                if not row and not verbose:
                    continue
                for y in list(self.targets):
                    if y == x or y not in targets_set:
                        continue
                    if verbose:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", x + y)
                    if y in row:
                        name = row[y]
                        call(name, lookup(name), y)
            if self.mutation.auto and not self.targets:
                self._cancel("no targets left")
                return False
            if verbose:
                self._log(LogLevel.EVERYTHING, "[handle] %s", "AnyEnter")
            entries = lookup("AnyEnter")
            if entries:
                call("AnyEnter", entries, None)
        except _Cancel:
            return False
        return True

    def _negotiation_names(self) -> list[str]:
        names = [s + "Exit" for s in self.exits]
        names += [s + "Enter" for s in self.enters]
        if self.mutation.type is not REMOVE:
            names += [s + s for s in self.targets if s in self.before_set]
        names += [x + y for x in self.before for y in self.targets if x != y]
        names.append("AnyEnter")
        return names

    def _call_negotiation(
        self, name: str, entries: tuple[Any, ...], auto_state: str | None
    ) -> None:
        """Call one negotiation handler; raise _Cancel when the transition ends."""
        mach = self.machine
        if mach._log_level >= _OPS:
            self._log(LogLevel.OPS, "[handler] %s", name)
        args = self._args
        event = Event(name, mach, self, {} if args is None else args)
        timeout = mach._handler_timeout
        for obj, func, _is_async in entries:
            try:
                result = func(obj, event) if obj is not None else func(event)
            except Exception as err:
                if not mach._catch_panics:
                    raise
                self._panic(name, err, final=False)
                raise _Cancel() from None
            if timeout:
                now = time.perf_counter()
                elapsed = now - self._mark
                self._mark = now
                if elapsed > timeout:
                    self._timeout(name, elapsed, final=False)
                    raise _Cancel()
            if result is not None and not result:
                if self.mutation.auto and auto_state is not None:
                    self._drop_auto_target(auto_state, name)
                    return
                self._cancel(name)
                raise _Cancel()

    def _drop_auto_target(self, state: str, by: str) -> None:
        compiled = self.machine._compiled
        if state not in compiled.schema or not compiled.schema[state].auto:
            self._cancel(by)
            raise _Cancel()
        if state in self.targets_set:
            self.targets.remove(state)
            # Auto transitions get their own mutable copy (see run).
            cast(set, self.targets_set).discard(state)
        self._log(LogLevel.DECISIONS, "[reject:auto] %s by %s", state, by)

    def _cancel(self, by: str) -> None:
        self.canceled = True
        self.canceled_by = by
        if self.machine._log_level >= _OPS:
            self._log(LogLevel.OPS, "[cancel] (%s) by %s", " ".join(self.targets), by)

    def _apply(self) -> None:
        """Make the targets the active states and tick the clocks."""
        if not self.mutation.auto:
            self._apply_plan()
            return
        mach = self.machine
        before_set = self.before_set
        targets = self.targets
        # Negotiation may have dropped targets, so the ticks follow the targets
        # and not the plan's enters.
        ticks = mach._ticks.copy()
        called_set = self.called_set
        multi = mach._compiled.multi
        changed = False
        newly = []
        for state in targets:
            if state not in before_set:
                ticks[state] += 1
                newly.append(state)
                changed = True
            elif state in called_set and state in multi:
                ticks[state] += 2
                changed = True
        removed = self.exits
        for state in removed:
            ticks[state] += 1
        if removed:
            changed = True
        self._applied(ticks, frozenset(targets), newly, changed, newly)

    def _apply_plan(self) -> None:
        """Apply a transition whose targets are the plan's (not auto)."""
        mach = self.machine
        # The plan's enters are exactly the targets whose tick grows: new ones
        # by 1 and re-entered Multi ones by 2.
        enters = self.enters
        removed = self.exits
        changed = bool(enters) or bool(removed)
        if changed:
            before_set = self.before_set
            ticks = mach._ticks.copy()
            for state in enters:
                ticks[state] += 2 if state in before_set else 1
            for state in removed:
                ticks[state] += 1
        else:
            ticks = mach._ticks
        # Transitions that are not auto keep the plan's frozenset as targets_set.
        self._applied(ticks, self.targets_set, enters, changed, None)  # type: ignore[arg-type]

    def _applied(
        self,
        ticks: dict[str, int],
        active_set: frozenset[str],
        activated: list[str],
        changed: bool,
        newly: list[str] | None,
    ) -> None:
        """Store the new ticks and active states, log, and end changed contexts.

        `newly` lists the activated states that were inactive before, or is
        None to derive it from `activated`.
        """
        mach = self.machine
        # New objects replace the machine's ticks and active states, because
        # ticks_before, before and before_set of transitions share the old ones.
        # The active list is a copy, so changes to tx.targets cannot reach it.
        mach._ticks = ticks
        mach._active = self.targets[:]
        mach._active_set = active_set
        self.tick_changed = changed
        self.applied = True
        self.activated = activated
        removed = self.deactivated = self.exits
        if changed and mach._log_level >= _CHANGES:
            if newly is None:
                newly = [s for s in activated if s not in self.before_set]
            self._log_state_change(newly, removed)
        contexts = mach._contexts
        if contexts:
            for state in activated:
                ctx = contexts.pop(state, None)
                if ctx is not None:
                    ctx._resolve()
            for state in removed:
                ctx = contexts.pop(state, None)
                if ctx is not None:
                    ctx._resolve()

    def _log_state_change(self, newly: list[str], removed: list[str]) -> None:
        mach = self.machine
        parts = [f"+{s}" for s in newly]
        reentered = [s for s in self.enters if s not in newly]
        parts += [f"+{s}" for s in reentered]
        parts += [f"-{s}" for s in removed]
        if mach._log_level >= _EVERYTHING:
            touched = set(newly) | set(reentered)
            parts += [s for s in mach._active if s not in touched]
        tag = "[auto_]" if self.mutation.auto else "[state]"
        self._log(LogLevel.CHANGES, "%s %s", tag, " ".join(parts))

    def _final_phase(self, dispatch: bool) -> None:
        mach = self.machine
        compiled = mach._compiled
        table = mach._dispatch
        verbose = mach._log_level >= _EVERYTHING
        exits = self.exits
        enters = self.enters
        position = 0
        if mach._handler_timeout:
            self._mark = time.perf_counter()
        try:
            if table is not None:
                lookup = table.get
                call = self._call_final
                end_names = compiled.end_names
                for state in exits:
                    name = end_names[state]
                    if verbose:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", name)
                    entries = lookup(name)
                    if entries:
                        call(name, entries, state)
                    position += 1
                state_names = compiled.state_names
                for state in enters:
                    name = state_names[state]
                    if verbose:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", name)
                    entries = lookup(name)
                    if entries:
                        call(name, entries, state)
                    if mach._args_waiters:
                        mach._match_args_waiters(state, self._args)
                    position += 1
            else:
                if verbose:
                    for state in exits:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", state + "End")
                position = len(exits)
                for state in enters:
                    if verbose:
                        self._log(LogLevel.EVERYTHING, "[handle] %s", state + "State")
                    if mach._args_waiters:
                        mach._match_args_waiters(state, self._args)
                    position += 1
        except _Cancel:
            # A State handler failed: that state and every later one go back.
            # An End handler failure keeps all targets, as the reference does.
            finals = exits + enters
            marker_failed = position >= len(exits)
            self._recover(finals[position:] if marker_failed else [])

    def _call_final(
        self, name: str, entries: tuple[Any, ...], state: str | None
    ) -> None:
        mach = self.machine
        if mach._log_level >= _OPS:
            self._log(LogLevel.OPS, "[handler] %s", name)
        args = self._args
        event = Event(name, mach, self, {} if args is None else args)
        timeout = mach._handler_timeout
        for obj, func, is_async in entries:
            try:
                result = func(obj, event) if obj is not None else func(event)
                if is_async:
                    mach._start_handler_task(result, state, name)
            except Exception as err:
                if not mach._catch_panics:
                    raise
                self._panic(name, err, final=True)
                raise _Cancel() from None
            if timeout:
                now = time.perf_counter()
                elapsed = now - self._mark
                self._mark = now
                if elapsed > timeout:
                    self._timeout(name, elapsed, final=True)
                    raise _Cancel()

    def _call_any_state(self) -> None:
        table = self.machine._dispatch
        if self.machine._log_level >= _EVERYTHING:
            self._log(LogLevel.EVERYTHING, "[handle] %s", "AnyState")
        if table is None:
            return
        entries = table.cache.get("AnyState")
        if entries is None:
            entries = table.get("AnyState")
        if not entries:
            return
        try:
            self._call_final("AnyState", entries, None)
        except _Cancel:
            # AnyState failed: the targets stay, as for End handlers.
            self._recover([])

    def _recover(self, revert: list[str]) -> None:
        """Undo a failed final phase: put back `revert` and re-apply the rest.

        The reference applies the recovered states twice, so an already active
        Multi state that was called ticks by 2 twice more. This is kept so that
        clocks match the reference.
        """
        mach = self.machine
        self.canceled = True
        revert_set = set(revert)
        fixed = [s for s in mach._active if s not in revert_set]
        for _ in range(2):
            self._reapply(fixed)
        self._log(LogLevel.OPS, "[recover] %s", " ".join(revert))

    def _reapply(self, fixed: list[str]) -> None:
        mach = self.machine
        # Copy on write, as in _apply.
        ticks = mach._ticks = mach._ticks.copy()
        previous = mach._active_set
        multi = mach._compiled.multi
        called_set = self.called_set
        fixed_set = set(fixed)
        for state in fixed:
            if state not in previous:
                ticks[state] += 1
            elif state in called_set and state in multi:
                ticks[state] += 2
        contexts = mach._contexts
        for state in mach._active:
            if state not in fixed_set:
                ticks[state] += 1
                ctx = contexts.pop(state, None)
                if ctx is not None:
                    ctx._resolve()
        mach._active = fixed[:]
        mach._active_set = frozenset(fixed_set)

    def _panic(self, name: str, err: Exception, final: bool) -> None:
        """Handle an exception raised by a handler, as the reference does a panic."""
        mach = self.machine
        self.canceled = True
        self.canceled_by = name
        self.error = err
        mach._err = err
        self._log(LogLevel.OPS, "[cancel] (%s) by recover", " ".join(self.targets))
        mach._log_error(
            "handler %s of machine %s raised %s: %s",
            name,
            mach.id,
            type(err).__name__,
            err,
            exc=err,
        )
        if EXCEPTION in self.called_set:
            # No Exception for a failure while handling Exception itself.
            return
        args = {
            "err": err,
            "err_trace": "".join(traceback.format_exception(err)),
            "panic": {
                "handler": name,
                "called": list(self.called),
                "before": list(self.before),
                "final": final,
            },
        }
        mach._prepend(Mutation(ADD, (EXCEPTION,), args))

    def _timeout(self, name: str, elapsed: float, final: bool) -> None:
        mach = self.machine
        self.canceled = True
        self.canceled_by = name
        err = HandlerTimeoutError(
            f"handler {name} of machine {mach.id} ran {elapsed * 1000:.0f} ms, "
            f"over the handler timeout of {mach._handler_timeout * 1000:.0f} ms"
        )
        self.error = err
        self._log(LogLevel.OPS, "[cancel] (%s) by timeout", " ".join(self.targets))
        self._log(LogLevel.DECISIONS, "[handler:timeout]: %s", name)
        mach._internal_error(err)
        if elapsed > mach._handler_deadline:
            mach._deadline_exceeded(err)

    def _log(self, level: int, message: str, *args: Any) -> None:
        mach = self.machine
        if mach._log_level >= level:
            # _emit also records the line in this transition's log_lines.
            mach._emit(level, message, args)

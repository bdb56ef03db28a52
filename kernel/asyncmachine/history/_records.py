"""Records of machines and transitions, shared by history, telemetry and dumps.

A :class:`MachineSchema` describes one machine (its states, relations, parent and
tags); a :class:`TxRecord` describes one transition of it. Both convert to and
from the JSON objects of the dump format (``docs/dump-format.md``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import StateError
from .._types import Source

if TYPE_CHECKING:
    from .._machine import Machine
    from .._transition import Transition

__all__ = [
    "MUTATION_TYPES",
    "MachineSchema",
    "TxRecord",
    "record_from_transition",
    "schema_from_machine",
]

MUTATION_TYPES = ("add", "remove", "set")


class MachineSchema:
    """One machine as telemetry and dumps describe it.

    Attributes:
        id: the machine id.
        parent: the parent machine's id, or None.
        tags: the machine's tags.
        states: every state name in state order; clocks follow this order.
        schema: state name mapped to ``State.to_dict()`` (only the set fields).
        groups: group name mapped to state names, from ``Machine.groups()``.
        groups_order: the display order of the groups.
        clock: ticks in state order when the schema was taken.
        queue_tick: the machine's queue tick when the schema was taken.
        time: Unix time in seconds when the schema was taken.
        dropped: records of this machine that telemetry dropped, as the
            collector counted them (0 for local histories).
    """

    __slots__ = (
        "id",
        "parent",
        "tags",
        "states",
        "schema",
        "groups",
        "groups_order",
        "clock",
        "queue_tick",
        "time",
        "dropped",
        "_index",
    )

    def __init__(
        self,
        id: str,
        states: Sequence[str],
        schema: Mapping[str, Mapping[str, Any]],
        *,
        parent: str | None = None,
        tags: Sequence[str] = (),
        groups: Mapping[str, Sequence[str]] | None = None,
        groups_order: Sequence[str] = (),
        clock: Sequence[int] | None = None,
        queue_tick: int = 1,
        time: float = 0.0,
        dropped: int = 0,
    ) -> None:
        self.id = id
        self.parent = parent
        self.tags = tuple(tags)
        self.states = tuple(states)
        self.schema = {name: dict(fields) for name, fields in schema.items()}
        self.groups = {k: tuple(v) for k, v in (groups or {}).items()}
        self.groups_order = tuple(groups_order)
        self.clock = tuple(clock) if clock is not None else (0,) * len(self.states)
        self.queue_tick = queue_tick
        self.time = time
        self.dropped = dropped
        self._index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """State name mapped to its position in :attr:`states`."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.states)}
        return self._index

    def state_index(self, state: str) -> int:
        """Return the position of `state`.

        Raises:
            StateError: the machine has no such state.
        """
        try:
            return self.index[state]
        except KeyError:
            raise StateError(
                f"unknown state {state!r} for machine {self.id!r}; "
                f"known states: {list(self.states)}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        """Return the dump's schema record (a JSON object)."""
        return {
            "kind": "schema",
            "id": self.id,
            "parent": self.parent,
            "tags": list(self.tags),
            "states": list(self.states),
            "schema": self.schema,
            "groups": {k: list(v) for k, v in self.groups.items()},
            "groups_order": list(self.groups_order),
            "clock": list(self.clock),
            "queue_tick": self.queue_tick,
            "time": self.time,
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MachineSchema:
        """Build a schema from a schema record.

        Raises:
            ValueError: a required key is missing or has the wrong type.
        """
        try:
            schema = cls(
                _expect(data, "id", str),
                _expect(data, "states", list),
                _expect(data, "schema", dict),
                parent=data.get("parent"),
                tags=data.get("tags") or (),
                groups=data.get("groups") or {},
                groups_order=data.get("groups_order") or (),
                clock=data.get("clock"),
                queue_tick=int(data.get("queue_tick", 1)),
                time=float(data.get("time", 0.0)),
                dropped=int(data.get("dropped", 0)),
            )
        except (TypeError, AttributeError) as err:
            raise ValueError(f"invalid schema record: {err}") from None
        if len(schema.clock) != len(schema.states):
            raise ValueError(
                f"schema record of {schema.id!r} has {len(schema.clock)} ticks "
                f"for {len(schema.states)} states"
            )
        return schema

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MachineSchema):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"<MachineSchema {self.id} states={len(self.states)}>"


class TxRecord:
    """One transition of one machine.

    Attributes:
        mach: the machine id.
        id: the transition id (unique within the machine's process).
        time: Unix time in seconds when the transition ended.
        type: the mutation type, ``"add"``, ``"remove"`` or ``"set"``.
        called: the called states, in call order.
        targets: the target states the relations resolved, in state order.
        before: the states active before the transition, in state order.
        clock_before: ticks before the transition, in state order.
        clock_after: ticks after the transition, in state order.
        result: 0 executed, 1 canceled (as ``am.Result``).
        auto: the transition activated auto states.
        check: a dry run of ``can_add`` or ``can_remove``; nothing changed.
        sync: ticks applied by ``Machine.sync_clock`` (a mirror's update).
        source: the handler event that made the mutation, or None.
        queue_tick: the machine's queue tick after the transition.
        log: log lines the machine produced during the transition.
        args: the names of the mutation's args; values are never recorded.
    """

    __slots__ = (
        "mach",
        "id",
        "time",
        "type",
        "called",
        "targets",
        "before",
        "clock_before",
        "clock_after",
        "result",
        "auto",
        "check",
        "sync",
        "source",
        "queue_tick",
        "log",
        "args",
    )

    def __init__(
        self,
        mach: str,
        id: str,
        time: float,
        type: str,
        called: tuple[str, ...],
        targets: tuple[str, ...],
        before: tuple[str, ...],
        clock_before: tuple[int, ...],
        clock_after: tuple[int, ...],
        result: int,
        auto: bool = False,
        check: bool = False,
        sync: bool = False,
        source: Source | None = None,
        queue_tick: int = 0,
        log: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
    ) -> None:
        self.mach = mach
        self.id = id
        self.time = time
        self.type = type
        self.called = called
        self.targets = targets
        self.before = before
        self.clock_before = clock_before
        self.clock_after = clock_after
        self.result = result
        self.auto = auto
        self.check = check
        self.sync = sync
        self.source = source
        self.queue_tick = queue_tick
        self.log = log
        self.args = args

    @property
    def accepted(self) -> bool:
        """Whether the transition was executed (not canceled)."""
        return self.result == 0

    @property
    def time_sum(self) -> int:
        """The machine time after the transition: the sum of all ticks."""
        return sum(self.clock_after)

    def tick_before(self, index: int) -> int:
        """Return the tick before the transition of the state at `index`.

        Records taken before a schema change have shorter clocks; a state that
        did not exist yet has tick 0.
        """
        clock = self.clock_before
        return clock[index] if index < len(clock) else 0

    def tick_after(self, index: int) -> int:
        """Return the tick after the transition of the state at `index`."""
        clock = self.clock_after
        return clock[index] if index < len(clock) else 0

    def changed(self, index: int) -> bool:
        """Whether the transition changed the tick of the state at `index`."""
        return self.tick_before(index) != self.tick_after(index)

    def activated(self, index: int) -> bool:
        """Whether the state at `index` was activated, or re-entered (Multi)."""
        after = self.tick_after(index)
        return after % 2 == 1 and after != self.tick_before(index)

    def deactivated(self, index: int) -> bool:
        """Whether the state at `index` went from active to inactive."""
        return self.tick_before(index) % 2 == 1 and self.tick_after(index) % 2 == 0

    def touches(self, state: str, index: int) -> bool:
        """Whether `state` (at `index`) was called or its tick changed."""
        return state in self.called or self.changed(index)

    def to_json(self) -> dict[str, Any]:
        """Return the dump's transition record (a JSON object)."""
        source = self.source
        return {
            "kind": "tx",
            "mach": self.mach,
            "id": self.id,
            "time": self.time,
            "type": self.type,
            "called": list(self.called),
            "targets": list(self.targets),
            "before": list(self.before),
            "clock_before": list(self.clock_before),
            "clock_after": list(self.clock_after),
            "result": self.result,
            "auto": self.auto,
            "check": self.check,
            "sync": self.sync,
            "source": None
            if source is None
            else {"mach": source.mach_id, "tx": source.tx_id, "time": source.mach_time},
            "queue_tick": self.queue_tick,
            "log": list(self.log),
            "args": list(self.args),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TxRecord:
        """Build a record from a transition record (a JSON object).

        Raises:
            ValueError: a key is missing or has the wrong type.
        """
        try:
            source = data["source"]
            kind = data["type"]
            if kind not in MUTATION_TYPES:
                raise ValueError(f"unknown mutation type {kind!r}")
            return cls(
                data["mach"],
                data["id"],
                float(data["time"]),
                kind,
                tuple(data["called"]),
                tuple(data["targets"]),
                tuple(data["before"]),
                tuple(data["clock_before"]),
                tuple(data["clock_after"]),
                int(data["result"]),
                bool(data["auto"]),
                bool(data["check"]),
                bool(data["sync"]),
                None
                if source is None
                else Source(source["mach"], source["tx"], int(source["time"])),
                int(data["queue_tick"]),
                tuple(data["log"]),
                tuple(data["args"]),
            )
        except KeyError as err:
            raise ValueError(f"transition record without the key {err}") from None
        except TypeError as err:
            raise ValueError(f"invalid transition record: {err}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TxRecord):
            return NotImplemented
        return all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        result = "executed" if self.result == 0 else "canceled"
        return (
            f"<TxRecord {self.mach}/{self.id} {self.type} "
            f"{' '.join(self.called)} {result}>"
        )


def _expect(data: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise ValueError(f"schema record without the key {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise ValueError(
            f"schema record key {key!r} must be a {kind.__name__}, "
            f"got {type(value).__name__}"
        )
    return value


def schema_from_machine(mach: Machine) -> MachineSchema:
    """Return the schema record of `mach`, with its current clock."""
    groups, order = mach.groups()
    return MachineSchema(
        mach.id,
        mach.state_names(),
        {name: state.to_dict() for name, state in mach.schema().items()},
        parent=mach.parent_id,
        tags=mach.tags,
        groups=groups,
        groups_order=order,
        clock=mach.time(),
        queue_tick=mach.queue_tick(),
        time=time.time(),
    )


def record_from_transition(
    tx: Transition, result: Any, when: float | None = None
) -> TxRecord:
    """Return the record of a finished transition, as a tracer sees it."""
    mutation = tx.mutation
    args = tx.args
    return TxRecord(
        tx.machine.id,
        tx.id,
        time.time() if when is None else when,
        mutation.type.value,
        tuple(tx.called),
        tuple(tx.target_states()),
        tuple(tx.before_states()),
        tuple(tx.time_before),
        tuple(tx.time_after),
        int(result),
        mutation.auto,
        mutation.check,
        mutation.clock is not None,
        mutation.source,
        tx.machine.queue_tick(),
        tuple(tx.log_lines or ()),
        tuple(args) if args else (),
    )

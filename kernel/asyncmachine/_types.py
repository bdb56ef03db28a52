"""Small value types: results, mutation kinds, log levels, mutations, events."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._machine import Machine
    from ._transition import Transition

__all__ = ["Event", "LogLevel", "Mutation", "MutationType", "Result", "Source"]


class Result(int):
    """The result of a mutation: executed (0), canceled (1), or queued (2 and up).

    A queued result's value is the queue tick at which the mutation runs (see
    ``Machine.when_queue``), or 2 for a check queued from a handler.
    """

    __slots__ = ()

    EXECUTED: Result
    CANCELED: Result

    @property
    def executed(self) -> bool:
        """Return whether the mutation was executed."""
        return self == 0

    @property
    def canceled(self) -> bool:
        """Return whether the mutation was canceled."""
        return self == 1

    @property
    def queued(self) -> bool:
        """Return whether the mutation was queued and runs later."""
        return self >= 2

    def __repr__(self) -> str:
        if self == 0:
            return "Result.EXECUTED"
        if self == 1:
            return "Result.CANCELED"
        return f"Result.QUEUED({int(self)})"

    def __str__(self) -> str:
        if self == 0:
            return "executed"
        if self == 1:
            return "canceled"
        return f"queued:{int(self)}"


Result.EXECUTED = Result(0)
Result.CANCELED = Result(1)
EXECUTED = Result.EXECUTED
CANCELED = Result.CANCELED


class MutationType(enum.Enum):
    """The kind of a mutation."""

    ADD = "add"
    REMOVE = "remove"
    SET = "set"

    # Members are singletons compared by identity, so the identity hash is
    # consistent with equality. It runs in C, unlike Enum.__hash__, which
    # matters because the plan cache hashes the type on every transition.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


ADD = MutationType.ADD
REMOVE = MutationType.REMOVE
SET = MutationType.SET


class LogLevel(enum.IntEnum):
    """How much a machine logs, from nothing to every handler lookup.

    Messages go to the standard ``logging`` module (logger ``asyncmachine.machine``):
    EXTERNAL and CHANGES at INFO, OPS, DECISIONS and EVERYTHING at DEBUG.
    """

    NOTHING = 0
    EXTERNAL = 1
    CHANGES = 2
    OPS = 3
    DECISIONS = 4
    EVERYTHING = 5


class Source(NamedTuple):
    """The source of a mutation: a handler event of some machine."""

    mach_id: str
    tx_id: str
    mach_time: int


class Mutation:
    """A request to change the active states, as it sits in the queue."""

    __slots__ = (
        "type",
        "called",
        "args",
        "auto",
        "check",
        "source",
        "queue_tick",
        "clock",
    )

    def __init__(
        self,
        type: MutationType,
        called: tuple[str, ...],
        args: dict[str, Any] | None,
        auto: bool = False,
        check: bool = False,
        source: Source | None = None,
        queue_tick: int = 0,
    ) -> None:
        self.type = type
        self.called = called
        self.args = args
        self.auto = auto
        self.check = check
        self.source = source
        # 0 for prepended mutations, which get no queue tick.
        self.queue_tick = queue_tick
        # For a clock sync (see Machine.sync_clock): new ticks by state and the
        # source's queue and machine ticks.
        self.clock: tuple[dict[str, int], int | None, int | None] | None = None

    def __repr__(self) -> str:
        flags = ""
        if self.auto:
            flags += " auto"
        if self.check:
            flags += " check"
        tick = f" @{self.queue_tick}" if self.queue_tick else ""
        return f"<Mutation {self.type.value} {' '.join(self.called)}{flags}{tick}>"


class Event:
    """The argument of a handler: its name, the machine, the transition and args."""

    # Transitions also build events without __init__, setting these slots one
    # by one (see _transition._new_event); a new field must be set there too.
    __slots__ = ("name", "machine", "transition", "args")

    def __init__(
        self,
        name: str,
        machine: Machine,
        transition: Transition,
        args: dict[str, Any],
    ) -> None:
        self.name = name
        self.machine = machine
        self.transition = transition
        self.args = args

    @property
    def mach_id(self) -> str:
        """The id of the machine running the handler."""
        return self.machine.id

    def is_valid(self) -> bool:
        """Return whether the event's transition is still running and not canceled."""
        tx = self.transition
        return self.machine._transition is tx and not tx.completed and not tx.canceled

    def source(self) -> Source:
        """Return this event as the source of a mutation made by its handler."""
        tx = self.transition
        return Source(self.machine.id, tx.id, sum(tx.time_before))

    def __repr__(self) -> str:
        return f"<Event {self.name} of {self.machine.id}>"

"""Transition records, a tracer that collects them, and their sequence diagram.

Usage::

    from asyncmachine import vis

    recorder = vis.record_transitions(mach)
    mach.add("Start")
    mach.remove("Ready")
    vis.to_svg(vis.sequence_graph(recorder.records()))
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._tracer import Tracer
from . import _style as style
from ._graphviz import graphviz
from ._machine import new_digraph

if TYPE_CHECKING:
    from .._machine import Machine
    from .._transition import Transition

__all__ = [
    "TransitionRecord",
    "TransitionRecorder",
    "record_transitions",
    "sequence_graph",
]

_ARG_REPR_LIMIT = 60


@dataclass(frozen=True)
class TransitionRecord:
    """A record of one transition of a machine and the states it changed.

    Attributes:
        machine_id: the machine's id.
        tx_id: the transition's id.
        mutation_type: ``add``, ``remove`` or ``set``.
        called: the called states, in call order.
        activated: states that became active.
        reentered: Multi states that were active and were called again.
        deactivated: states that became inactive.
        accepted: whether the transition was accepted.
        result: ``executed`` or ``canceled``.
        auto: whether this was the auto transition.
        canceled_by: the handler or state that canceled it, if any.
        source: ``machine_id/tx_id/machine_time`` of the mutation's source.
        args: the mutation's args as ``repr`` strings, shortened.
        ticks: ticks after the transition of the called and touched states.
        machine_time: the sum of all ticks after the transition.
        time: the wall-clock time of the end of the transition (``time.time()``).
    """

    machine_id: str
    tx_id: str
    mutation_type: str
    called: tuple[str, ...]
    activated: tuple[str, ...] = ()
    reentered: tuple[str, ...] = ()
    deactivated: tuple[str, ...] = ()
    accepted: bool = True
    result: str = "executed"
    auto: bool = False
    canceled_by: str | None = None
    source: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    ticks: dict[str, int] = field(default_factory=dict)
    machine_time: int = 0
    time: float = 0.0

    @classmethod
    def from_transition(cls, tx: Transition, result: Any) -> TransitionRecord:
        """Build a record from a finished transition and its ``am.Result``."""
        mach = tx.machine
        before = set(tx.before_states())

        accepted = bool(tx.accepted)
        activated: tuple[str, ...] = ()
        reentered: tuple[str, ...] = ()
        deactivated: tuple[str, ...] = ()
        if accepted:
            activated = tuple(s for s in tx.activated if s not in before)
            reentered = tuple(s for s in tx.activated if s in before)
            deactivated = tuple(tx.deactivated)

        clock = tx.clock_after
        touched = dict.fromkeys((*tx.called_states(), *activated, *deactivated))
        source = tx.mutation.source

        return cls(
            machine_id=mach.id,
            tx_id=tx.id,
            mutation_type=tx.type.value,
            called=tuple(tx.called_states()),
            activated=activated,
            reentered=reentered,
            deactivated=deactivated,
            accepted=accepted,
            result=str(result),
            auto=tx.is_auto,
            canceled_by=tx.canceled_by,
            source=(
                f"{source.mach_id}/{source.tx_id}/{source.mach_time}"
                if source is not None
                else None
            ),
            args={key: _short_repr(value) for key, value in tx.args.items()},
            ticks={state: clock[state] for state in touched if state in clock},
            machine_time=sum(clock.values()),
            time=time.time(),
        )

    def call_text(self) -> str:
        """Return the mutation as ``[type] States``, ``[auto]`` for auto ones."""
        kind = "auto" if self.auto else self.mutation_type
        return f"[{kind}] {' '.join(self.called)}"

    def summary(self) -> str:
        """Return one line: type, called states, changes and result."""
        changes = [f"+{s}" for s in self.activated]
        changes += [f"+{s}" for s in self.reentered]
        changes += [f"-{s}" for s in self.deactivated]
        line = self.call_text()
        if changes:
            line += f" -> {' '.join(changes)}"
        line += f" ({self.result}"
        if self.canceled_by:
            line += f" by {self.canceled_by}"
        return line + ")"


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _ARG_REPR_LIMIT:
        return text[: _ARG_REPR_LIMIT - 3] + "..."
    return text


class TransitionRecorder(Tracer):
    """A tracer that keeps the last `max_records` transitions of its machines.

    Checks (``can_add``, ``can_remove``) are not recorded, nor canceled auto
    transitions, which follow most transitions of a machine with an auto state
    and change nothing. It may be attached to several machines, and the records
    of all of them go to one list.

    Args:
        max_records: the maximum number of records kept. The oldest are dropped
            first.
        include_canceled: also record transitions that were not accepted.
    """

    def __init__(self, max_records: int = 100, include_canceled: bool = True) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be 1 or more, got {max_records}")
        self.max_records = max_records
        self.include_canceled = include_canceled
        self._records: deque[TransitionRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()

    def transition_end(self, tx: Transition, result: Any) -> None:
        """Record `tx`, unless it is a check or a rejection not recorded."""
        if tx.is_check:
            return
        if not tx.accepted and (tx.is_auto or not self.include_canceled):
            return
        record = TransitionRecord.from_transition(tx, result)
        with self._lock:
            self._records.append(record)

    def records(self, machine_id: str | None = None) -> list[TransitionRecord]:
        """Return the records, oldest first, optionally of one machine only."""
        with self._lock:
            records = list(self._records)
        if machine_id is None:
            return records
        return [r for r in records if r.machine_id == machine_id]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()


def record_transitions(mach: Machine, max_records: int = 100) -> TransitionRecorder:
    """Attach a new :class:`TransitionRecorder` to `mach` and return it."""
    recorder = TransitionRecorder(max_records)
    mach.add_tracer(recorder)
    return recorder


def _cell(text: str, *, bgcolor: str | None = None, color: str | None = None) -> str:
    attrs = ' BORDER="1"'
    if bgcolor:
        attrs += f' BGCOLOR="{bgcolor}"'
    content = text or " "
    if color:
        content = f'<FONT COLOR="{color}">{content}</FONT>'
    return f"<TD{attrs}>{content}</TD>"


def _state_cell(record: TransitionRecord, state: str) -> str:
    """Return the table cell of `state` in the row of `record`."""
    tick = record.ticks.get(state)
    tick_text = f" {tick}" if tick is not None else ""
    called = state in record.called
    if state in record.activated:
        text, fill, color = f"+{tick_text}", style.ADD_COLOR, style.ACTIVE_TEXT
    elif state in record.reentered:
        text, fill, color = f"+{tick_text} again", style.ADD_COLOR, style.ACTIVE_TEXT
    elif state in record.deactivated:
        text, fill, color = f"-{tick_text}", style.REMOVE_COLOR, style.ACTIVE_TEXT
    elif called and not record.accepted:
        text, fill, color = "x", style.CANCELED_COLOR, "#FFFFFF"
    elif called:
        text, fill, color = "called", None, style.FOREGROUND
    else:
        return _cell("")
    if called:
        text = f"<U>{text}</U>"
    return _cell(text, bgcolor=fill, color=color)


def sequence_graph(transitions: Iterable[TransitionRecord]) -> graphviz.Digraph:
    """Build a table of transitions: one row each, one column per touched state.

    A cell shows ``+ tick`` for an activated state, ``+ tick again`` for a
    re-entered Multi state, ``- tick`` for a deactivated one and ``x`` for a
    called state of a canceled transition. Called states are underlined. With
    records of several machines, column headers name the machine too.

    Args:
        transitions: records in order, e.g. ``TransitionRecorder.records()``.
    """
    records = list(transitions)
    columns: dict[tuple[str, str], None] = {}
    for record in records:
        for state in (
            *record.called,
            *record.activated,
            *record.reentered,
            *record.deactivated,
        ):
            columns.setdefault((record.machine_id, state), None)
    machine_ids = {record.machine_id for record in records}

    header = [_cell("<B>transition</B>", color=style.FOREGROUND)]
    for mach_id, state in columns:
        name = html.escape(state)
        if len(machine_ids) > 1:
            name = f"{html.escape(mach_id)}<BR/>{name}"
        header.append(_cell(f"<B>{name}</B>", color=style.FOREGROUND))
    rows = ["<TR>" + "".join(header) + "</TR>"]
    for record in records:
        title = html.escape(record.call_text())
        if not record.accepted or record.result == "canceled":
            title += f"<BR/>canceled{_by(record)}"
        cells = [_cell(title, color=style.FOREGROUND)]
        for mach_id, state in columns:
            if mach_id != record.machine_id:
                cells.append(_cell(""))
            else:
                cells.append(_state_cell(record, state))
        rows.append("<TR>" + "".join(cells) + "</TR>")

    table = (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4" '
        f'COLOR="{style.GROUP_BORDER}">' + "".join(rows) + "</TABLE>>"
    )
    graph = new_digraph("asyncmachine transitions")
    graph.node("transitions", label=table, shape="plain", fontsize="10")
    return graph


def _by(record: TransitionRecord) -> str:
    if record.canceled_by:
        return f" by {html.escape(record.canceled_by)}"
    return ""

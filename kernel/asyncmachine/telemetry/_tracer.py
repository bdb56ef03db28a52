"""The telemetry tracer: captures each transition of one machine for an exporter."""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

from .._tracer import Tracer
from .._types import MutationType
from ..history import schema_from_machine
from ._address import Address
from ._wire import TYPE_ADD, TYPE_REMOVE, TYPE_SET

if TYPE_CHECKING:
    from .._machine import Machine
    from .._transition import Transition
    from ._exporter import Exporter

__all__ = ["TelemetryTracer"]

_now = time.time
_now_ns = time.time_ns
_ADD = MutationType.ADD
_REMOVE = MutationType.REMOVE


class TelemetryTracer(Tracer):
    """Queues a machine's schema and transitions on an exporter's outbox.

    A transition costs one tuple (positions ``C_*`` in :mod:`._wire`) of
    references to values the transition owns and never changes after it
    ended: the called tuple, the target and log lists, and the tick dicts
    before and after it (both are copies or replaced objects, never changed in
    place). A clock_before equal to the previous clock_after is that very
    dict, so the encoder can leave it out after checking identity. The
    exporter's task packs the tuples a few hundred at a time, which keeps the
    memory they hold small, and encodes them later.

    When the outbox is full the record is dropped, counted in :attr:`dropped`,
    and reported to the collector with the next record that fits.

    Args:
        exporter: the exporter of the collector's address.
        checks: also send the dry runs of ``can_add`` and ``can_remove``.
    """

    def __init__(self, exporter: Exporter, *, checks: bool = False) -> None:
        self.exporter = exporter
        self.checks = checks
        self.mach_id = ""
        self.schema_message: dict[str, Any] = {}
        self.dropped = 0
        self._unreported = 0
        # The state order of the last schema message; the tick dicts of a
        # transition follow the machine's current order.
        self._names: tuple[str, ...] = ()

    @property
    def address(self) -> Address:
        """The collector's address."""
        return self.exporter.address

    def machine_init(self, mach: Machine) -> None:
        self.mach_id = mach.id
        self._names = mach.state_names()
        self.schema_message = schema_from_machine(mach).to_json()
        self.exporter.register(self)
        # A machine dropped without dispose() leaves the exporter too.
        weakref.finalize(mach, self.exporter.unregister, mach.id)

    def transition_end(self, tx: Transition, result: Any) -> None:
        mutation = tx.mutation
        check = mutation.check
        if check and not self.checks:
            return
        exporter = self.exporter
        outbox = exporter.outbox
        queued = len(outbox)
        if queued >= exporter.capacity:
            self._drop()
            return
        if self._unreported:
            self._report_drops()
        mach = tx.machine
        # Machine.import_ may reorder the states without a tracer hook; the
        # private attribute keeps this check to one identity comparison.
        if mach._compiled.names is not self._names:
            self._order_changed(mach)

        # The core never changes a tick dict in place (copy on write), so the
        # packer can tell by identity that a clock_before equals the previous
        # record's clock_after, and both dicts can be kept as they are.
        before = tx.ticks_before
        after = tx._ticks_after or tx.clock_after

        mtype = mutation.type
        if mtype is _ADD:
            type_code = TYPE_ADD
        elif mtype is _REMOVE:
            type_code = TYPE_REMOVE
        else:
            type_code = TYPE_SET
        args = mutation.args
        outbox.append(
            (
                self.mach_id,
                tx.seq,
                _now_ns(),
                type_code,
                tx.called,
                after,
                before,
                None if result == 0 and not check else tx.targets,
                result,
                mutation.auto,
                check,
                mutation.clock is not None,
                mach._queue_tick,
                mutation.source,
                tx.log_lines or None,
                tuple(args) if args else None,
            )
        )
        if not exporter._wake_pending:
            exporter.signal()
        elif queued == exporter.pack_at:
            exporter.wake()

    def _drop(self) -> None:
        self.dropped += 1
        self._unreported += 1
        self.exporter.note_drop(self.mach_id)

    def _report_drops(self) -> None:
        self.exporter.outbox.append(
            {"kind": "dropped", "mach": self.mach_id, "count": self._unreported}
        )
        self._unreported = 0

    def _order_changed(self, mach: Machine) -> None:
        """Send the schema again when the machine's state order changed."""
        names = mach.state_names()
        if names != self._names:
            self.schema_message = schema_from_machine(mach).to_json()
            self.exporter.outbox.append(self.schema_message)
        self._names = names

    def count_lost(self, count: int = 1) -> None:
        """Count records that were taken from the outbox but never arrived."""
        self.dropped += count
        self._unreported += count
        self.exporter.dropped += count

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        self._names = mach.state_names()
        self.schema_message = schema_from_machine(mach).to_json()
        self.exporter.outbox.append(self.schema_message)
        self.exporter.signal()

    def machine_dispose(self, mach_id: str) -> None:
        exporter = self.exporter
        exporter.outbox.append({"kind": "dispose", "mach": mach_id, "time": _now()})
        exporter.unregister(mach_id)

    def __repr__(self) -> str:
        return f"<TelemetryTracer {self.mach_id} to {self.address}>"

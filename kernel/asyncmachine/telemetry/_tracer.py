"""The telemetry tracer: captures each transition of one machine for an exporter."""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

from .._tracer import Tracer
from ..history import schema_from_machine
from ._address import Address
from ._wire import FLAG_AUTO, FLAG_CHECK, FLAG_SYNC, TYPE_CODES

if TYPE_CHECKING:
    from .._machine import Machine
    from .._transition import Transition
    from ._exporter import Exporter

__all__ = ["TelemetryTracer"]

_now = time.time
_now_ns = time.time_ns


class TelemetryTracer(Tracer):
    """Queues a machine's schema and transitions on an exporter's outbox.

    A transition costs one tuple of references to values the transition already
    computed; encoding happens later, in the exporter's task. When the outbox is
    full the record is dropped, counted in :attr:`dropped`, and reported to the
    collector with the next record that fits.

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
        self._last_after: list[int] | None = None
        # Whether the transition's tick dicts list states in state order, so
        # that their values() are clocks; checked on the first transition.
        self._ordered: bool | None = None

    @property
    def address(self) -> Address:
        """The collector's address."""
        return self.exporter.address

    def machine_init(self, mach: Machine) -> None:
        self.mach_id = mach.id
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
        if len(outbox) >= exporter.capacity:
            self.dropped += 1
            self._unreported += 1
            exporter.note_drop(self.mach_id)
            return
        if self._unreported:
            outbox.append(
                {"kind": "dropped", "mach": self.mach_id, "count": self._unreported}
            )
            self._unreported = 0
        flags = FLAG_AUTO if mutation.auto else 0
        if check:
            flags |= FLAG_CHECK
        if mutation.clock is not None:
            flags |= FLAG_SYNC
        if self._ordered is None:
            self._ordered = list(tx.clock_before) == list(tx.machine.state_names())
        if self._ordered:
            after = list(tx.clock_after.values())
            before = list(tx.ticks_before.values())
        else:
            after = tx.time_after
            before = tx.time_before
        previous = self._last_after
        if before == previous:
            # Reusing the previous record's clock_after object signals to the
            # encoder that it may leave clock_before out.
            before = previous
        self._last_after = after
        args = mutation.args
        outbox.append(
            (
                self.mach_id,
                tx.id,
                _now_ns(),
                TYPE_CODES[mutation.type],
                tx.called,
                after,
                before,
                None if result == 0 and not check else tx.target_states(),
                int(result),
                flags,
                tx.machine.queue_tick(),
                mutation.source,
                tx.log_lines or None,
                tuple(args) if args else None,
            )
        )
        if not exporter._wake_pending:
            exporter.signal()

    def count_lost(self) -> None:
        """Count a record that was taken from the outbox but never arrived."""
        self.dropped += 1
        self._unreported += 1
        self.exporter.dropped += 1

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        self._ordered = None
        self.schema_message = schema_from_machine(mach).to_json()
        self.exporter.outbox.append(self.schema_message)
        self.exporter.signal()

    def machine_dispose(self, mach_id: str) -> None:
        exporter = self.exporter
        exporter.outbox.append({"kind": "dispose", "mach": mach_id, "time": _now()})
        exporter.unregister(mach_id)

    def __repr__(self) -> str:
        return f"<TelemetryTracer {self.mach_id} to {self.address}>"

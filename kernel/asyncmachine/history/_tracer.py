"""The tracer that records a local machine's transitions into a history."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .._tracer import Tracer
from ._base import History
from ._memory import MemoryHistory
from ._records import record_from_transition, schema_from_machine
from ._sqlite import SQLiteHistory

if TYPE_CHECKING:
    from .._machine import Machine
    from .._transition import Transition

__all__ = ["HistoryTracer", "track"]


class HistoryTracer(Tracer):
    """Appends a record of every transition of one machine to :attr:`history`.

    Args:
        history: where records go.
        checks: also record the dry runs of ``can_add`` and ``can_remove``.
        canceled: also record canceled transitions.
    """

    def __init__(
        self, history: History, *, checks: bool = False, canceled: bool = True
    ) -> None:
        self.history = history
        self.checks = checks
        self.canceled = canceled

    def transition_end(self, tx: Transition, result: Any) -> None:
        if tx.is_check and not self.checks:
            return
        if result != 0 and not self.canceled:
            return
        self.history.append(record_from_transition(tx, result))

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        self.history.set_schema(schema_from_machine(mach))

    def machine_dispose(self, mach_id: str) -> None:
        if isinstance(self.history, SQLiteHistory):
            self.history.sync()


def track(
    mach: Machine,
    *,
    max_records: int | None = 1000,
    max_age: float | None = None,
    database: str | os.PathLike[str] | None = None,
    checks: bool = False,
    canceled: bool = True,
) -> History:
    """Record the transitions of `mach` from now on and return the history.

    Args:
        mach: the machine to record.
        max_records: the maximum number of records kept; None keeps all.
        max_age: seconds a record is kept; None keeps records of any age.
        database: an SQLite file to persist the history in; in memory when None.
        checks: also record dry runs (``can_add``, ``can_remove``).
        canceled: also record canceled transitions.

    Usage::

        hist = history.track(mach, max_records=500)
        mach.add("Foo")
        hist.activated_recently("Foo", within=60)  # True
    """
    schema = schema_from_machine(mach)
    store: History
    if database is None:
        store = MemoryHistory(schema, max_records=max_records, max_age=max_age)
    else:
        store = SQLiteHistory(
            database, schema, max_records=max_records, max_age=max_age
        )
    mach.add_tracer(HistoryTracer(store, checks=checks, canceled=canceled))
    return store

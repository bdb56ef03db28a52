"""Transition history of machines: records, bounded stores, queries and dumps.

A history keeps the transitions of one machine, bounded by count and age, in
memory or in SQLite, and answers questions such as "was Foo activated in the
last minute?"::

    import asyncmachine as am
    from asyncmachine import history

    mach = am.Machine({"Foo": am.State(), "Bar": am.State()}, id="foo")
    hist = history.track(mach, max_records=1000, max_age=3600)
    mach.add("Foo")
    hist.activated_recently("Foo", within=60)  # True
    hist.touching("Foo", limit=10)             # the last 10 records touching Foo

The same records travel in telemetry to am-dbg and fill its dump files.
"""

from ._base import History
from ._dump import (
    DUMP_FORMAT,
    DUMP_VERSION,
    Dump,
    DumpError,
    MachineDump,
    read_dump,
    read_dump_from,
    write_dump,
    write_dump_to,
)
from ._memory import MemoryHistory
from ._records import (
    MUTATION_TYPES,
    MachineSchema,
    TxRecord,
    record_from_transition,
    schema_from_machine,
)
from ._sqlite import SQLiteHistory
from ._tracer import HistoryTracer, track

__all__ = [
    "DUMP_FORMAT",
    "DUMP_VERSION",
    "MUTATION_TYPES",
    "Dump",
    "DumpError",
    "History",
    "HistoryTracer",
    "MachineDump",
    "MachineSchema",
    "MemoryHistory",
    "SQLiteHistory",
    "TxRecord",
    "read_dump",
    "read_dump_from",
    "record_from_transition",
    "schema_from_machine",
    "track",
    "write_dump",
    "write_dump_to",
]

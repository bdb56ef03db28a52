"""A history persisted in SQLite (the standard library's sqlite3).

One database file can hold the histories of many machines. Besides each record
(as the dump's JSON object) a ``touches`` table lists, per transition, every
state that was called or whose tick changed, so that the state queries run in
SQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ._base import History
from ._records import MachineSchema, TxRecord

__all__ = ["SQLiteHistory"]

# Appended records wait in memory until this many are pending or a query runs.
_FLUSH_EVERY = 256

_TABLES = """
CREATE TABLE IF NOT EXISTS machines (
    id TEXT PRIMARY KEY,
    schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mach TEXT NOT NULL,
    time REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_mach_time ON transitions (mach, time);
CREATE TABLE IF NOT EXISTS touches (
    seq INTEGER NOT NULL,
    mach TEXT NOT NULL,
    state TEXT NOT NULL,
    called INTEGER NOT NULL,
    tick_before INTEGER NOT NULL,
    tick_after INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS touches_state ON touches (mach, state, seq);
"""

_ACTIVATED = "tick_after != tick_before AND tick_after % 2 = 1"
_DEACTIVATED = "tick_before % 2 = 1 AND tick_after % 2 = 0"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SQLiteHistory(History):
    """A history stored in an SQLite database, with the queries of :class:`History`.

    Appends are buffered and written in batches; every query and :meth:`sync`
    writes the buffer first. Reopening a database continues the history of the
    same machine id.

    Args:
        database: a file path, ``":memory:"`` or an open ``sqlite3.Connection``
            (not closed by :meth:`close`).
        schema: the machine's schema, stored in the database; or the id of a
            machine whose schema the database already holds.
        max_records: the maximum number of records kept for this machine; None
            keeps all.
        max_age: seconds a record is kept after its time; None keeps all.
        clock: returns the current Unix time; ``time.time`` by default.

    Raises:
        KeyError: `schema` is an id the database has no schema for.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | sqlite3.Connection,
        schema: MachineSchema | str,
        *,
        max_records: int | None = 1000,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(database, sqlite3.Connection):
            self._db = database
            self._owns_db = False
        else:
            self._db = sqlite3.connect(os.fspath(database))
            self._owns_db = True
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_TABLES)
        if isinstance(schema, str):
            row = self._db.execute(
                "SELECT schema FROM machines WHERE id = ?", (schema,)
            ).fetchone()
            if row is None:
                raise KeyError(
                    f"the database has no history of machine {schema!r}; pass its "
                    f"MachineSchema to start one"
                )
            schema = MachineSchema.from_json(json.loads(row[0]))
        super().__init__(schema, max_records=max_records, max_age=max_age, clock=clock)
        self._pending: list[TxRecord] = []
        self._store_schema()

    def _store_schema(self) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO machines (id, schema) VALUES (?, ?)",
                (self.schema.id, _dumps(self.schema.to_json())),
            )

    def set_schema(self, schema: MachineSchema) -> None:
        """Replace the machine's schema and store it."""
        self.sync()
        super().set_schema(schema)
        self._store_schema()

    def append(self, record: TxRecord) -> None:
        """Buffer `record`; it is written with the next batch or query."""
        self._pending.append(record)
        if len(self._pending) >= _FLUSH_EVERY:
            self.sync()

    def sync(self) -> None:
        """Write the buffered records and drop the ones over the limits."""
        pending = self._pending
        if pending:
            self._pending = []
            self._write(pending)
        self._prune()

    def _write(self, records: list[TxRecord]) -> None:
        db = self._db
        index = self.schema.index
        with db:
            for record in records:
                cursor = db.execute(
                    "INSERT INTO transitions (mach, time, record) VALUES (?, ?, ?)",
                    (record.mach, record.time, _dumps(record.to_json())),
                )
                seq = cursor.lastrowid
                rows = []
                for state, i in index.items():
                    called = state in record.called
                    before = record.tick_before(i)
                    after = record.tick_after(i)
                    if called or before != after:
                        rows.append((seq, record.mach, state, called, before, after))
                db.executemany(
                    "INSERT INTO touches "
                    "(seq, mach, state, called, tick_before, tick_after) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def _prune(self) -> None:
        db = self._db
        mach = self.schema.id
        cutoffs = []
        if self.max_records is not None:
            row = db.execute(
                "SELECT seq FROM transitions WHERE mach = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (mach, self.max_records),
            ).fetchone()
            if row is not None:
                cutoffs.append(row[0])
        oldest = self._prune_time()
        if oldest is not None:
            row = db.execute(
                "SELECT MAX(seq) FROM transitions WHERE mach = ? AND time < ?",
                (mach, oldest),
            ).fetchone()
            if row is not None and row[0] is not None:
                cutoffs.append(row[0])
        if not cutoffs:
            return
        cutoff = max(cutoffs)
        with db:
            db.execute(
                "DELETE FROM transitions WHERE mach = ? AND seq <= ?", (mach, cutoff)
            )
            db.execute(
                "DELETE FROM touches WHERE mach = ? AND seq <= ?", (mach, cutoff)
            )

    def __len__(self) -> int:
        self.sync()
        row = self._db.execute(
            "SELECT COUNT(*) FROM transitions WHERE mach = ?", (self.schema.id,)
        ).fetchone()
        return int(row[0])

    def clear(self) -> None:
        """Drop every record of this machine."""
        self._pending = []
        with self._db:
            self._db.execute(
                "DELETE FROM transitions WHERE mach = ?", (self.schema.id,)
            )
            self._db.execute("DELETE FROM touches WHERE mach = ?", (self.schema.id,))

    def close(self) -> None:
        """Write the buffer and close the database if this history opened it."""
        self.sync()
        if self._owns_db:
            self._db.close()

    # Queries

    def _query(
        self,
        touch_condition: str | None,
        state: str | None,
        start: float | None,
        end: float | None,
        limit: int,
    ) -> list[TxRecord]:
        self.sync()
        sql = "SELECT t.record FROM transitions t WHERE t.mach = ?"
        params: list[Any] = [self.schema.id]
        if touch_condition is not None:
            self.schema.state_index(state)  # type: ignore[arg-type]
            sql += (
                " AND t.seq IN (SELECT seq FROM touches "
                f"WHERE mach = ? AND state = ? AND ({touch_condition}))"
            )
            params += [self.schema.id, state]
        if start is not None:
            sql += " AND t.time >= ?"
            params.append(start)
        if end is not None:
            sql += " AND t.time <= ?"
            params.append(end)
        sql += " ORDER BY t.seq DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._db.execute(sql, params).fetchall()
        return [TxRecord.from_json(json.loads(row[0])) for row in reversed(rows)]

    def records(
        self,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the records with a time within [start, end] (None: open)."""
        return self._query(None, None, start, end, limit)

    def touching(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that called `state` or changed its tick."""
        return self._query("1", state, start, end, limit)

    def activations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that activated (or re-entered) `state`."""
        return self._query(_ACTIVATED, state, start, end, limit)

    def deactivations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that deactivated `state`."""
        return self._query(_DEACTIVATED, state, start, end, limit)

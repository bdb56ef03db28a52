"""The in-memory history: a list of records, also usable in Pyodide."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ._base import History
from ._records import MachineSchema, TxRecord

__all__ = ["MemoryHistory"]

# Records removed from the front in one go once the list is over its limit, so
# that trimming costs O(1) per append on average.
_TRIM_SLACK = 256


class MemoryHistory(History):
    """A history kept in a Python list.

    Besides the queries of :class:`History` it offers positions: every record
    gets a sequence number (its position counted from the first record ever
    appended), which stays valid when older records are dropped.
    """

    def __init__(
        self,
        schema: MachineSchema,
        *,
        max_records: int | None = 1000,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(schema, max_records=max_records, max_age=max_age, clock=clock)
        self._records: list[TxRecord] = []
        # Sequence number of self._records[0].
        self._first_seq = 0

    def append(self, record: TxRecord) -> None:
        """Store `record` and drop the records over the limits."""
        records = self._records
        records.append(record)
        limit = self.max_records
        if limit is not None and len(records) > limit + _TRIM_SLACK:
            self._drop_front(len(records) - limit)
        if self.max_age is not None:
            self._prune_age()

    def extend(self, records: list[TxRecord]) -> None:
        """Store many records at once, as a dump import does."""
        self._records.extend(records)
        limit = self.max_records
        if limit is not None and len(self._records) > limit:
            self._drop_front(len(self._records) - limit)
        if self.max_age is not None:
            self._prune_age()

    def _drop_front(self, count: int) -> None:
        del self._records[:count]
        self._first_seq += count

    def _prune_age(self) -> None:
        oldest = self._prune_time()
        if oldest is None:
            return
        records = self._records
        count = 0
        for record in records:
            if record.time >= oldest:
                break
            count += 1
        if count:
            self._drop_front(count)

    def _visible(self) -> list[TxRecord]:
        """Return the records within the limits (trimming is lazy)."""
        if self.max_age is not None:
            self._prune_age()
        limit = self.max_records
        if limit is not None and len(self._records) > limit:
            self._drop_front(len(self._records) - limit)
        return self._records

    # Positions

    @property
    def first_seq(self) -> int:
        """The sequence number of the oldest kept record."""
        self._visible()
        return self._first_seq

    @property
    def end_seq(self) -> int:
        """One past the sequence number of the newest record."""
        return self.first_seq + len(self._records)

    def get(self, seq: int) -> TxRecord | None:
        """Return the record with sequence number `seq`, or None if not kept."""
        records = self._visible()
        position = seq - self._first_seq
        if 0 <= position < len(records):
            return records[position]
        return None

    def __iter__(self) -> Iterator[TxRecord]:
        return iter(list(self._visible()))

    def __len__(self) -> int:
        return len(self._visible())

    def clear(self) -> None:
        """Drop every record; sequence numbers continue where they were."""
        self._first_seq += len(self._records)
        self._records = []

    # Queries

    def _select(
        self,
        match: Callable[[TxRecord], bool] | None,
        start: float | None,
        end: float | None,
        limit: int,
    ) -> list[TxRecord]:
        found: list[TxRecord] = []
        # Newest first, so that a limit stops the scan early.
        for record in reversed(self._visible()):
            if end is not None and record.time > end:
                continue
            if start is not None and record.time < start:
                # Times only grow along the list, up to clock adjustments.
                break
            if match is None or match(record):
                found.append(record)
                if limit and len(found) >= limit:
                    break
        found.reverse()
        return found

    def records(
        self,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the records with a time within [start, end] (None: open)."""
        if start is None and end is None:
            records = self._visible()
            return list(records[-limit:] if limit else records)
        return self._select(None, start, end, limit)

    def touching(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that called `state` or changed its tick."""
        index = self.schema.state_index(state)
        return self._select(lambda r: r.touches(state, index), start, end, limit)

    def activations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that activated (or re-entered) `state`."""
        index = self.schema.state_index(state)
        return self._select(lambda r: r.activated(index), start, end, limit)

    def deactivations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that deactivated `state`."""
        index = self.schema.state_index(state)
        return self._select(lambda r: r.deactivated(index), start, end, limit)

"""The query interface shared by the in-memory and the SQLite histories."""

from __future__ import annotations

import time
from collections.abc import Callable

from ._records import MachineSchema, TxRecord

__all__ = ["History"]


class History:
    """Transitions of one machine, bounded by count and by age, with queries.

    Records are kept in the order they are appended, which is the machine's
    transition order. Every query returns records oldest first; `limit` keeps
    only the newest matches. Times are Unix times in seconds, and windows include
    both ends.

    "Activated" means the tick changed to an odd value (an activation, or a
    re-entry of an active Multi state); "deactivated" means the state was active
    before and inactive after.

    Args:
        schema: the machine the records belong to.
        max_records: the maximum number of records kept, oldest dropped first. None or 0
            keeps every record.
        max_age: seconds a record is kept after its time. None keeps records of
            any age.
        clock: returns the current Unix time; ``time.time`` by default.
    """

    def __init__(
        self,
        schema: MachineSchema,
        *,
        max_records: int | None = 1000,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_records is not None and max_records < 0:
            raise ValueError(f"max_records must be 0 or more, got {max_records}")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be above 0 seconds, got {max_age}")
        self.schema = schema
        self.max_records = max_records or None
        self.max_age = max_age
        self._clock = clock

    @property
    def mach_id(self) -> str:
        """The machine id."""
        return self.schema.id

    # Storage, implemented by subclasses.

    def append(self, record: TxRecord) -> None:
        """Store `record` and drop the records over the limits."""
        raise NotImplementedError

    def set_schema(self, schema: MachineSchema) -> None:
        """Replace the machine's schema, e.g. after ``Machine.set_schema``."""
        self.schema = schema

    def records(
        self,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the records with a time within [start, end] (None: open)."""
        raise NotImplementedError

    def touching(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that called `state` or changed its tick."""
        raise NotImplementedError

    def activations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that activated (or re-entered) `state`."""
        raise NotImplementedError

    def deactivations(
        self,
        state: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
    ) -> list[TxRecord]:
        """Return the transitions that deactivated `state`."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def clear(self) -> None:
        """Drop every record."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the storage; the memory history needs nothing."""

    # Queries built on the ones above.

    def last(self, n: int) -> list[TxRecord]:
        """Return the newest `n` records, oldest first."""
        if n <= 0:
            return []
        return self.records(limit=n)

    def activated_between(self, state: str, start: float, end: float) -> bool:
        """Whether `state` was activated within [start, end]."""
        return bool(self.activations(state, start, end, limit=1))

    def deactivated_between(self, state: str, start: float, end: float) -> bool:
        """Whether `state` was deactivated within [start, end]."""
        return bool(self.deactivations(state, start, end, limit=1))

    def activated_recently(self, state: str, within: float) -> bool:
        """Whether `state` was activated in the last `within` seconds."""
        now = self._clock()
        return self.activated_between(state, now - within, now)

    def active_between(self, state: str, start: float, end: float) -> bool:
        """Whether `state` was active at some moment within [start, end].

        The state at `start` comes from the last record at or before it, else
        from the first later record's clock before, else from the schema's clock.
        After that, any record within the window that leaves it active counts.
        """
        index = self.schema.state_index(state)
        earlier = self.records(None, start, limit=1)
        if earlier:
            active_at_start = earlier[-1].tick_after(index) % 2 == 1
            window = self.records(start, end)
        else:
            later = self.records(start, None)
            if later:
                active_at_start = later[0].tick_before(index) % 2 == 1
            else:
                active_at_start = self.schema.clock[index] % 2 == 1
            window = [record for record in later if record.time <= end]
        if active_at_start:
            return True
        return any(record.tick_after(index) % 2 == 1 for record in window)

    def _prune_time(self) -> float | None:
        """Return the oldest time kept by `max_age`, or None without the limit."""
        if self.max_age is None:
            return None
        return self._clock() - self.max_age

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mach_id} records={len(self)}>"

"""Packed records waiting to be sent, and their assembly into push calls.

The exporter packs what tracers queued soon after it was queued, so that the
captured tuples are freed while they are still few, and sends the packed items
in larger push calls, which cost less per record. Both steps keep every item
below the rpc frame limit.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from ._wire import Block, encode_push, pack_messages

__all__ = ["Push", "PendingItems"]

logger = logging.getLogger("asyncmachine.telemetry")

# Bytes of a frame left for rpyc's own framing of the push call.
_FRAME_RESERVE = 1024

Push = tuple[bytes, bytes, list[Any], int]
"""The arguments of one push call, the items in it, and its transitions."""


class PendingItems:
    """Packed items (blocks and control messages) in the order they were queued.

    Args:
        address: the collector's address, for log messages.
        count_lost: called with the items that were dropped because they cannot
            be encoded or do not fit in a frame.
    """

    def __init__(self, address: object, count_lost: Callable[[list[Any]], None]):
        self.address = address
        self.count_lost = count_lost
        self.items: deque[Any] = deque()
        self.transitions = 0
        # time.monotonic() when the oldest pending item was packed.
        self.since: float | None = None

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def pack(self, messages: list[Any], max_frame_size: int, now: float) -> None:
        """Pack captured messages and append them.

        A block whose data would not fit in half a frame is packed again from
        halves of `messages`.
        """
        limit = (max_frame_size - _FRAME_RESERVE) // 2
        try:
            items = pack_messages(messages)
        except struct.error as err:
            # A tick, id or time that is negative or above 2**64 - 1.
            self._drop(messages, f"they cannot be packed: {err}")
            return
        oversized = any(type(i) is Block and len(i.data) > limit for i in items)
        if oversized:
            if len(messages) == 1:
                self._drop(messages, "its clocks are over half the frame limit")
                return
            half = len(messages) // 2
            self.pack(messages[:half], max_frame_size, now)
            self.pack(messages[half:], max_frame_size, now)
            return
        if self.since is None:
            self.since = now
        for item in items:
            if type(item) is Block:
                self.transitions += item.transitions
            self.items.append(item)

    def take_push(self, batch_size: int, max_frame_size: int) -> list[Push]:
        """Remove the oldest items up to `batch_size` transitions, as push calls.

        Usually one push; more when the encoding would not fit in a frame.
        """
        items = self.items
        chunk = [items.popleft()]
        transitions = _transitions(chunk[0])
        while items and transitions + _transitions(items[0]) <= batch_size:
            item = items.popleft()
            chunk.append(item)
            transitions += _transitions(item)
        self.transitions -= transitions
        if not items:
            self.since = None
        return self._encode(chunk, max_frame_size)

    def take_pushes(self, batch_size: int, max_frame_size: int) -> list[Push]:
        """Remove every pending item, as push calls."""
        pushes: list[Push] = []
        while self.items:
            pushes.extend(self.take_push(batch_size, max_frame_size))
        return pushes

    def _encode(self, chunk: list[Any], max_frame_size: int) -> list[Push]:
        """Encode `chunk` as pushes below the frame limit."""
        try:
            payload, data, transitions = encode_push(chunk)
        except (TypeError, ValueError) as err:
            # An arg name or a log line that is not JSON.
            if len(chunk) == 1:
                self._drop(chunk, f"it is not valid JSON: {err!r}")
                return []
            payload, data, transitions = b"", b"", -1
        limit = max_frame_size - _FRAME_RESERVE
        if transitions >= 0 and len(payload) + len(data) <= limit:
            return [(payload, data, chunk, transitions)]
        if len(chunk) == 1:
            size = len(payload) + len(data)
            self._drop(chunk, f"its {size} bytes are over the frame limit")
            return []
        half = len(chunk) // 2
        return self._encode(chunk[:half], max_frame_size) + self._encode(
            chunk[half:], max_frame_size
        )

    def _drop(self, items: list[Any], reason: str) -> None:
        logger.error(
            "telemetry to %s: dropped %d messages, because %s",
            self.address,
            len(items),
            reason,
        )
        self.count_lost(items)


def _transitions(item: Any) -> int:
    return item.transitions if type(item) is Block else 0

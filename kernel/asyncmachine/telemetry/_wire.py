"""The telemetry wire format between a machine's process and the collector.

The sender calls two exposed methods of the collector's rpyc service:

- ``hello(version: int, info: bytes) -> int``: ``info`` is a JSON object
  (process id, host name, program); the reply is the collector's wire version.
- ``push(payload: bytes, data: bytes) -> int``: ``payload`` is a JSON array of
  messages in the order they happened. ``data`` contains the integer columns of
  its transition blocks, one block after the other. The reply is the number of
  messages accepted.

Messages:

- a schema record exactly as in dump files (``{"kind": "schema", ...}``);
- ``{"kind": "dropped", "mach": id, "count": n}``: n records of the machine
  were dropped before the next one;
- ``{"kind": "dispose", "mach": id, "time": t}``: the machine was disposed;
- ``{"kind": "txs", ...}``: a block of consecutive transitions stored by
  column, so that the sender encodes a block with builtins mapped over whole
  columns, with no Python code per transition.

A block has these keys (``n`` transitions):

- ``n``: the number of transitions.
- ``machs``: runs of transitions of one machine, in order, as
  ``[machine id, clock size, count]``; the counts add up to ``n``.
- ``widths``: one letter per integer column below, the column's unsigned
  little-endian integer type: ``B`` 1 byte, ``H`` 2, ``I`` 4, ``Q`` 8.
- ``called``: the called states of each transition.
- ``targets``, ``source``, ``log``, ``args``: lists of ``n`` items, left out
  when every item is null. ``targets`` is null for executed transitions that
  are not checks, whose targets are the states active after; else it lists the
  targets in any order. ``source`` is ``[mach id, tx id, machine time]``;
  ``log`` lists the transition's log lines, and ``args`` the names of its args.

The integer columns of a block, in ``data`` in this order:

1. transition number (the transition id is its lowercase hex form), ``n``;
2. time in integer nanoseconds since the Unix epoch, ``n``;
3. type (0 add, 1 remove, 2 set), ``n``;
4. result (0 executed, 1 canceled), ``n``;
5. auto (1 when the transition activated auto states), ``n``;
6. check (1 for a dry run of ``can_add`` or ``can_remove``), ``n``;
7. sync (1 for ticks applied by ``Machine.sync_clock``), ``n``;
8. queue tick, ``n``;
9. chained, ``n``: 1 when the transition's clock_before is left out because
   it equals the clock_after of the previous transition in the block, which
   belongs to the same machine;
10. clock_after of every transition, clock size values each;
11. clock_before of every transition that is not chained.

Clocks list ticks in the state order of the machine's latest schema message
before the block, and a clock may be shorter than that schema when the
transition happened before a schema change. The before states come from the
parity of ``clock_before``.
"""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Iterable, Sequence
from itertools import chain, compress, groupby, repeat
from typing import Any

from .._types import MutationType, Source
from ..history import MachineSchema, TxRecord

__all__ = [
    "WIRE_VERSION",
    "Block",
    "WireDecoder",
    "WireError",
    "encode_batch",
    "encode_push",
    "pack_messages",
]

WIRE_VERSION = 2

# The positions in a transition tuple captured by TelemetryTracer.
C_MACH = 0
C_ID = 1
C_TIME = 2
C_TYPE = 3
C_CALLED = 4
C_AFTER = 5
C_BEFORE = 6
C_TARGETS = 7
C_RESULT = 8
C_AUTO = 9
C_CHECK = 10
C_SYNC = 11
C_QUEUE_TICK = 12
C_SOURCE = 13
C_LOG = 14
C_ARGS = 15

TYPE_ADD = 0
TYPE_REMOVE = 1
TYPE_SET = 2
_TYPE_NAMES = {
    TYPE_ADD: MutationType.ADD.value,
    TYPE_REMOVE: MutationType.REMOVE.value,
    TYPE_SET: MutationType.SET.value,
}

# The width the encoder tries first for each integer column, in data order;
# a column with a larger value is sent as Q.
_PREFERRED_WIDTHS = "QQBBBBBQBII"
_COLUMNS = len(_PREFERRED_WIDTHS)
# Columns with one value per transition, before the two clock columns.
_ROW_COLUMNS = _COLUMNS - 2
_OPTIONAL = ("targets", "source", "log", "args")
_WIDTH_BYTES = {"B": 1, "H": 2, "I": 4, "Q": 8}

_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False
)


class WireError(ValueError):
    """A telemetry message is invalid."""


class Block:
    """A block of transitions packed for the wire, waiting to be sent.

    Attributes:
        message: the block's JSON object (``{"kind": "txs", ...}``).
        data: its integer columns.
        transitions: the number of transitions.
    """

    __slots__ = ("message", "data", "transitions")

    def __init__(self, message: dict[str, Any], data: bytes) -> None:
        self.message = message
        self.data = data
        self.transitions: int = message["n"]

    def runs(self) -> list[tuple[str, int]]:
        """Return (machine id, transitions) for each run of one machine."""
        return [(mach, count) for mach, _size, count in self.message["machs"]]

    def __repr__(self) -> str:
        return f"<Block {self.transitions} transitions, {len(self.data)} bytes>"


def pack_messages(messages: Iterable[Any]) -> list[Any]:
    """Pack captured messages: consecutive transition tuples become a :class:`Block`.

    `messages` contains schema and control dicts and transition tuples as the
    tracer captured them, and the dicts are returned unchanged. Packing frees
    the tuples, so the exporter packs often and sends less often.

    Raises:
        struct.error: a tick, id or time is negative or above 2**64 - 1.
    """
    items: list[Any] = []
    for kind, group in groupby(messages, type):
        if kind is tuple:
            items.append(_pack_block(list(group)))
        else:
            items.extend(group)
    return items


def encode_push(items: Iterable[Any]) -> tuple[bytes, bytes, int]:
    """Encode packed items as the arguments of one ``push`` call.

    Returns the JSON payload, the integer data and the number of transitions.

    Raises:
        TypeError: a value cannot be encoded as JSON.
    """
    out: list[Any] = []
    data: list[bytes] = []
    transitions = 0
    for item in items:
        if type(item) is Block:
            out.append(item.message)
            data.append(item.data)
            transitions += item.transitions
        else:
            out.append(item)
    return _encoder.encode(out).encode(), b"".join(data), transitions


def encode_batch(messages: Iterable[Any]) -> tuple[bytes, bytes, int]:
    """Pack and encode captured messages as the arguments of one ``push`` call."""
    return encode_push(pack_messages(messages))


def _pack(column: Sequence[int], width: str, data: list[bytes]) -> str:
    """Append `column` packed as `width`, else as Q, to `data`; return the width.

    Trying a width and catching the error costs less than finding the
    column's maximum first.
    """
    try:
        packed = struct.pack(f"<{len(column)}{width}", *column)
    except struct.error:
        width = "Q"
        packed = struct.pack(f"<{len(column)}Q", *column)
    data.append(packed)
    return width


def _pack_block(block: list[tuple[Any, ...]]) -> Block:
    """Pack consecutive transition tuples as one block.

    Every step maps a builtin over whole columns, so no Python bytecode runs
    per transition; this keeps the exporter's share of the machine's process
    small.
    """
    (
        machs,
        ids,
        times,
        types,
        called,
        afters,
        befores,
        targets,
        results,
        autos,
        checks,
        syncs,
        queue_ticks,
        sources,
        logs,
        args,
    ) = zip(*block, strict=True)
    count = len(block)
    # The core never changes a tick dict in place, so a clock_before that is
    # the previous record's clock_after dict has its values, and identity
    # decides the chaining. A record chains only to one of its own machine.
    chained = [False]
    chained += map(operator.is_, befores[1:], afters)
    if machs.count(machs[0]) == count:
        runs = [[machs[0], len(afters[0]), count]]
    else:
        keys = zip(machs, map(len, afters), strict=True)
        runs = [[mach, size, len(list(run))] for (mach, size), run in groupby(keys)]
        same = [False]
        same += map(operator.eq, machs[1:], machs)
        chained = list(map(operator.and_, chained, same))
    after_ticks = list(chain.from_iterable(map(dict.values, afters)))
    unchained = compress(befores, map(operator.not_, chained))
    before_ticks = list(chain.from_iterable(map(dict.values, unchained)))
    columns = (
        ids,
        times,
        types,
        results,
        autos,
        checks,
        syncs,
        queue_ticks,
        chained,
        after_ticks,
        before_ticks,
    )
    data: list[bytes] = []
    widths = "".join(
        [
            _pack(column, width, data)
            for column, width in zip(columns, _PREFERRED_WIDTHS, strict=True)
        ]
    )
    message: dict[str, Any] = {
        "kind": "txs",
        "n": count,
        "machs": runs,
        "widths": widths,
        "called": called,
    }
    for name, column in zip(_OPTIONAL, (targets, sources, logs, args), strict=True):
        if column.count(None) != count:
            message[name] = column
    return Block(message, b"".join(data))


class WireDecoder:
    """Turns ``push`` calls of one connection into schemas and records.

    The decoder keeps the schema of each machine seen on the connection, so it
    belongs to one connection.
    """

    def __init__(self) -> None:
        self._machines: dict[str, MachineSchema] = {}

    def decode(self, payload: bytes, data: bytes = b"") -> list[Any]:
        """Decode one push into :class:`MachineSchema`, :class:`TxRecord` and dicts.

        Control messages (``dropped``, ``dispose``) are returned as dicts.
        Invalid messages raise :class:`WireError` after the valid ones before
        them were returned in ``err.decoded``.
        """
        try:
            messages = json.loads(payload)
        except ValueError as err:
            raise WireError(f"payload is not JSON: {err}") from None
        if not isinstance(messages, list):
            raise WireError("payload must be a JSON array of messages")
        decoded: list[Any] = []
        offset = 0
        for position, message in enumerate(messages):
            try:
                offset = self._decode_one(message, data, offset, decoded)
            except (WireError, ValueError, TypeError, IndexError, KeyError) as err:
                error = WireError(f"message {position}: {err}")
                error.decoded = decoded  # type: ignore[attr-defined]
                raise error from None
        if offset != len(data):
            error = WireError(f"the blocks use {offset} of the {len(data)} data bytes")
            error.decoded = decoded  # type: ignore[attr-defined]
            raise error
        return decoded

    def _decode_one(
        self, message: Any, data: bytes, offset: int, decoded: list[Any]
    ) -> int:
        """Decode `message` into `decoded`; return the data offset after it."""
        if not isinstance(message, dict):
            raise WireError(f"expected an object, got {message!r:.80}")
        kind = message.get("kind")
        if kind == "txs":
            # A block is decoded whole before any of it is kept, so an invalid
            # block adds no records.
            records, offset = self._decode_block(message, data, offset)
            decoded.extend(records)
        elif kind == "schema":
            schema = MachineSchema.from_json(message)
            self._machines[schema.id] = schema
            decoded.append(schema)
        elif kind in ("dropped", "dispose"):
            if not isinstance(message.get("mach"), str):
                raise WireError(f"{kind} message without a machine id")
            decoded.append(message)
        else:
            raise WireError(f"unknown message kind {kind!r}")
        return offset

    def _decode_block(
        self, message: dict[str, Any], data: bytes, offset: int
    ) -> tuple[list[TxRecord], int]:
        n = message["n"]
        if type(n) is not int or n < 0:
            raise WireError(f"block size must be an int of 0 or more, got {n!r}")
        runs = _runs(message["machs"], n)
        widths = message["widths"]
        if (
            not isinstance(widths, str)
            or len(widths) != _COLUMNS
            or not set(widths) <= _WIDTH_BYTES.keys()
        ):
            raise WireError(
                f"widths must be {_COLUMNS} letters of BHIQ, got {widths!r:.40}"
            )
        reader = _ColumnReader(data, offset)
        columns = [reader.read(n, width) for width in widths[:_ROW_COLUMNS]]
        chained = columns[-1]
        after_count = sum(size * count for _, size, count in runs)
        after_ticks = reader.read(after_count, widths[_ROW_COLUMNS])
        before_count = 0
        start = 0
        for _, size, count in runs:
            before_count += size * (count - sum(chained[start : start + count]))
            start += count
        before_ticks = reader.read(before_count, widths[_ROW_COLUMNS + 1])
        records = self._build_records(message, runs, columns, after_ticks, before_ticks)
        return records, reader.offset

    def _build_records(
        self,
        message: dict[str, Any],
        runs: list[tuple[str, int, int]],
        columns: list[tuple[int, ...]],
        after_ticks: tuple[int, ...],
        before_ticks: tuple[int, ...],
    ) -> list[TxRecord]:
        ids, times, types, results, autos, checks, syncs, queue_ticks, chained = columns
        n = len(ids)
        called = _column(message, "called", n)
        targets, sources, logs, args = [_column(message, name, n) for name in _OPTIONAL]

        records: list[TxRecord] = []
        i = 0
        after_at = 0
        before_at = 0
        previous_mach: str | None = None
        previous_after: tuple[int, ...] = ()
        previous_active: tuple[str, ...] = ()
        for mach_id, size, run_count in runs:
            states, index = self._states(mach_id, size)
            for _ in range(run_count):
                after = after_ticks[after_at : after_at + size]
                after_at += size
                active = _active(states, after)

                if chained[i] == 1 and previous_mach == mach_id:
                    before = previous_after
                    before_active = previous_active
                elif chained[i] == 0:
                    before = before_ticks[before_at : before_at + size]
                    before_at += size
                    before_active = _active(states, before)
                else:
                    raise WireError(
                        f"transition {i} of the block is chained to no transition "
                        f"of {mach_id!r}"
                    )

                target = targets[i]
                log = logs[i]
                arg_names = args[i]
                records.append(
                    TxRecord(
                        mach_id,
                        f"{ids[i]:x}",
                        times[i] / 1e9,
                        _TYPE_NAMES[types[i]],
                        tuple(called[i]),
                        active if target is None else _in_order(target, index),
                        before_active,
                        before,
                        after,
                        results[i],
                        autos[i] == 1,
                        checks[i] == 1,
                        syncs[i] == 1,
                        _source(sources[i]),
                        queue_ticks[i],
                        tuple(log) if log else (),
                        tuple(arg_names) if arg_names else (),
                    )
                )
                previous_mach = mach_id
                previous_after = after
                previous_active = active
                i += 1
        return records

    def _states(
        self, mach_id: str, size: int
    ) -> tuple[tuple[str, ...], dict[str, int]]:
        """Return the states of `mach_id` and their positions, for clocks of `size`."""
        schema = self._machines.get(mach_id)
        if schema is None:
            raise WireError(f"transition of machine {mach_id!r} before its schema")
        if size > len(schema.states):
            raise WireError(
                f"transitions of {mach_id!r} have {size} ticks, the machine "
                f"has {len(schema.states)} states"
            )
        return schema.states, schema.index


def _active(states: tuple[str, ...], clock: tuple[int, ...]) -> tuple[str, ...]:
    """Return the states with an odd tick in `clock`."""
    return tuple(compress(states, map(operator.and_, clock, repeat(1))))


def _in_order(names: list[str], index: dict[str, int]) -> tuple[str, ...]:
    """Return `names` in state order; unknown names go last."""
    last = len(index)
    return tuple(sorted(names, key=lambda name: index.get(name, last)))


def _source(value: Any) -> Source | None:
    """Return the Source of ``[mach id, tx id, machine time]``, or None."""
    if value is None:
        return None
    mach_id, tx_id, mach_time = value
    return Source(str(mach_id), str(tx_id), int(mach_time))


class _ColumnReader:
    """Reads the integer columns of blocks from a push's data, in order."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def read(self, count: int, width: str) -> tuple[int, ...]:
        size = count * _WIDTH_BYTES[width]
        if self.offset + size > len(self.data):
            raise WireError(
                f"the data ends inside a block: {size} bytes needed at offset "
                f"{self.offset} of {len(self.data)}"
            )
        values = struct.unpack_from(f"<{count}{width}", self.data, self.offset)
        self.offset += size
        return values


def _runs(runs: Any, n: int) -> list[tuple[str, int, int]]:
    """Validate the machine runs of a block of `n` transitions."""
    if not isinstance(runs, list):
        raise WireError("machs must be a list of [id, clock size, count]")
    checked = []
    total = 0
    for run in runs:
        if not isinstance(run, list) or len(run) != 3:
            raise WireError(f"invalid machine run {run!r:.80}")
        mach_id, size, count = run
        if (
            not isinstance(mach_id, str)
            or type(size) is not int
            or type(count) is not int
            or size < 0
            or count < 1
        ):
            raise WireError(f"invalid machine run {run!r:.80}")
        checked.append((mach_id, size, count))
        total += count
    if total != n:
        raise WireError(f"machine runs cover {total} of the {n} transitions")
    return checked


def _column(message: dict[str, Any], name: str, count: int) -> Sequence[Any]:
    """Return the list `name` of a block, or nulls where it is left out."""
    column = message.get(name)
    if column is None:
        if name == "called":
            raise WireError("block without called states")
        return [None] * count
    if not isinstance(column, list) or len(column) != count:
        raise WireError(f"{name} must be a list of {count} items")
    return column

"""The telemetry wire format between a machine's process and the collector.

The sender calls two exposed methods of the collector's rpyc service:

- ``hello(version: int, info: bytes) -> int``: ``info`` is a JSON object
  (process id, host name, program); the reply is the collector's wire version.
- ``push(payload: bytes) -> int``: ``payload`` is a JSON array of messages in
  the order they happened; the reply is the number of messages accepted.

Messages:

- a schema record exactly as in dump files (``{"kind": "schema", ...}``);
- ``{"kind": "dropped", "mach": id, "count": n}``: n records of the machine
  were dropped before the next one;
- ``{"kind": "dispose", "mach": id, "time": t}``: the machine was disposed;
- a transition as a JSON array, positions given by the ``TX_*`` constants:
  ``[mach, id, time, type, called, clock_after, clock_before, targets, result,
  flags, queue_tick, source, log, args]``, with ``time`` in integer
  nanoseconds since the Unix epoch.

A transition array leaves out what the collector can derive: ``clock_before``
is null when it equals the previous ``clock_after`` of the machine sent on the
same connection; ``targets`` is null for executed transitions that are not
checks, whose targets are the states active after; the before states always
come from the parity of ``clock_before``. ``type`` is 0 add, 1 remove, 2 set;
``flags`` has bit 1 auto, 2 check, 4 sync; ``source`` is null or
``[mach id, tx id, machine time]``; ``log`` and ``args`` are null when empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._types import MutationType, Source
from ..history import MachineSchema, TxRecord

__all__ = [
    "FLAG_AUTO",
    "FLAG_CHECK",
    "FLAG_SYNC",
    "TYPE_CODES",
    "WIRE_VERSION",
    "WireDecoder",
    "WireError",
    "encode_batch",
]

WIRE_VERSION = 1

TYPE_CODES = {MutationType.ADD: 0, MutationType.REMOVE: 1, MutationType.SET: 2}
_TYPE_NAMES = ("add", "remove", "set")

FLAG_AUTO = 1
FLAG_CHECK = 2
FLAG_SYNC = 4

# Positions in a transition array.
TX_MACH = 0
TX_ID = 1
TX_TIME = 2
TX_TYPE = 3
TX_CALLED = 4
TX_AFTER = 5
TX_BEFORE = 6
TX_TARGETS = 7
TX_RESULT = 8
TX_FLAGS = 9
TX_QUEUE_TICK = 10
TX_SOURCE = 11
TX_LOG = 12
TX_ARGS = 13
TX_FIELDS = 14

_encoder = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False
)


class WireError(ValueError):
    """A telemetry message is invalid."""


def encode_batch(messages: Iterable[Any], last_after: dict[str, Any]) -> bytes:
    """Encode captured messages as one ``push`` payload.

    `messages` holds schema and control dicts and transition tuples as the
    tracer captured them (with ``clock_before`` always present). `last_after`
    maps machine ids to the last ``clock_after`` list sent on this connection;
    it is updated, and ``clock_before`` is left out where it is that very list.
    """
    out: list[Any] = []
    append = out.append
    for message in messages:
        if type(message) is tuple:
            mach = message[0]
            # The tracer reuses the previous clock_after object when the clocks
            # chain, so identity (not equality) decides.
            if last_after.get(mach) is message[TX_BEFORE]:
                message = (*message[:TX_BEFORE], None, *message[TX_TARGETS:])
            last_after[mach] = message[TX_AFTER]
        elif message.get("kind") == "schema":
            last_after.pop(message["id"], None)
        append(message)
    return _encoder.encode(out).encode()


class _Machine:
    __slots__ = ("schema", "clock", "states")

    def __init__(self, schema: MachineSchema) -> None:
        self.schema = schema
        self.clock: tuple[int, ...] = schema.clock
        self.states = schema.states


class WireDecoder:
    """Turns ``push`` payloads of one connection into schemas and records.

    The decoder keeps each machine's last clock, so it belongs to one
    connection: clocks left out of a transition refer to that connection's
    previous transition of the machine.
    """

    def __init__(self) -> None:
        self._machines: dict[str, _Machine] = {}

    def decode(self, payload: bytes) -> list[Any]:
        """Decode a payload into :class:`MachineSchema`, :class:`TxRecord` and dicts.

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
        for position, message in enumerate(messages):
            try:
                decoded.append(self._decode_one(message))
            except (WireError, ValueError, TypeError, IndexError, KeyError) as err:
                error = WireError(f"message {position}: {err}")
                error.decoded = decoded  # type: ignore[attr-defined]
                raise error from None
        return decoded

    def _decode_one(self, message: Any) -> Any:
        if type(message) is list:
            return self._decode_tx(message)
        if not isinstance(message, dict):
            raise WireError(f"expected an array or object, got {message!r:.80}")
        kind = message.get("kind")
        if kind == "schema":
            schema = MachineSchema.from_json(message)
            self._machines[schema.id] = _Machine(schema)
            return schema
        if kind in ("dropped", "dispose"):
            if not isinstance(message.get("mach"), str):
                raise WireError(f"{kind} message without a machine id")
            return message
        raise WireError(f"unknown message kind {kind!r}")

    def _decode_tx(self, message: list[Any]) -> TxRecord:
        if len(message) != TX_FIELDS:
            raise WireError(
                f"transition with {len(message)} fields, expected {TX_FIELDS}"
            )
        mach_id = message[TX_MACH]
        machine = self._machines.get(mach_id)
        if machine is None:
            raise WireError(f"transition of machine {mach_id!r} before its schema")
        states = machine.states
        after = tuple(message[TX_AFTER])
        before_clock = message[TX_BEFORE]
        before = machine.clock if before_clock is None else tuple(before_clock)
        if len(after) > len(states) or len(before) > len(states):
            raise WireError(
                f"transition {message[TX_ID]!r} of {mach_id!r} has "
                f"{len(after)} ticks, the machine has {len(states)} states"
            )
        targets = message[TX_TARGETS]
        if targets is None:
            targets = tuple([states[i] for i, tick in enumerate(after) if tick & 1])
        else:
            targets = tuple(targets)
        flags = message[TX_FLAGS]
        source = message[TX_SOURCE]
        log = message[TX_LOG]
        args = message[TX_ARGS]
        record = TxRecord(
            mach_id,
            str(message[TX_ID]),
            message[TX_TIME] / 1e9,
            _TYPE_NAMES[message[TX_TYPE]],
            tuple(message[TX_CALLED]),
            targets,
            tuple([states[i] for i, tick in enumerate(before) if tick & 1]),
            before,
            after,
            int(message[TX_RESULT]),
            bool(flags & FLAG_AUTO),
            bool(flags & FLAG_CHECK),
            bool(flags & FLAG_SYNC),
            None if source is None else Source(source[0], source[1], int(source[2])),
            int(message[TX_QUEUE_TICK]),
            tuple(log) if log else (),
            tuple(args) if args else (),
        )
        machine.clock = after
        return record

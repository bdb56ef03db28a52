"""Compact binary forms of the most frequent wire messages.

A mirror's mutation, the source's reply and the source's clock pushes are the
messages of every change, so they also have a binary form: smaller than JSON and
several times faster to encode and decode. The first byte distinguishes the form
from JSON. It is a tag in 0xA1..0xA3, a UTF-8 continuation byte, which never
starts a JSON text. A new layout gets a new tag.

Layouts (``varint``: unsigned LEB128 of at most 10 bytes; ``str``: varint byte
length, then UTF-8; ``u8``: one byte; ``u32``: 4 bytes big-endian)::

    0xA1 set_clock     varint queue_tick_delta, varint machine_tick_delta,
                       u32 checksum, then (varint index, varint delta) pairs
                       up to the end
    0xA2 mutate        u8 kind, u8 flags, varint count, count x varint index,
                       str mutation_id, then by flags: str args (a JSON object),
                       str name, str machine_id, str transition_id, u8 is_check
                       (the event), str error
    0xA3 mutate_reply  varint result, u8 flags, then with a clock the set_clock
                       layout without its tag

Mutate flags: 1 needs_reply, 2 args, 4 event, 8 error. Reply flags: 1 clock. A
reply with per-mutation updates has no binary form and travels as JSON.

Decoding applies the same checks as the JSON codec and raises
:class:`~asyncmachine.rpc.wire.WireError` naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from ._wire import (
    MAX_NAME_LENGTH,
    MAX_STATES,
    Message,
    Mutate,
    MutateReply,
    MutationEvent,
    MutationType,
    SetClock,
    WireError,
    unchecked,
)

__all__ = [
    "BINARY_TAGS",
    "decode_binary",
    "encode_binary",
    "encode_mutate",
    "encode_mutate_reply",
]

_SET_CLOCK = 0xA1
_MUTATE = 0xA2
_MUTATE_REPLY = 0xA3
BINARY_TAGS = frozenset(bytes([tag]) for tag in (_SET_CLOCK, _MUTATE, _MUTATE_REPLY))
"""First bytes of the binary forms."""

_NEEDS_REPLY = 1
_HAS_ARGS = 2
_HAS_EVENT = 4
_HAS_ERROR = 8
_HAS_CLOCK = 1
_KINDS = {kind.value: kind for kind in MutationType}
# Ten 7-bit groups hold any value up to 2**70 - 1, which covers 64-bit ticks.
_MAX_VARINT_BYTES = 10
_MAX_VALUE = (1 << (7 * _MAX_VARINT_BYTES)) - 1


# -- encoding --------------------------------------------------------------------------


def _varint(out: bytearray, value: int) -> None:
    if value > _MAX_VALUE:
        raise WireError("varint", value, "a value needs more than 70 bits")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _text(out: bytearray, value: str) -> None:
    data = value.encode("utf-8")
    _varint(out, len(data))
    out += data


def _clock_body(out: bytearray, clock: SetClock) -> None:
    queue_delta = clock.queue_tick_delta
    machine_delta = clock.machine_tick_delta
    # Values below 128 are one byte each, the common case, so skip the calls.
    if queue_delta < 0x80 and machine_delta < 0x80:
        out.append(queue_delta)
        out.append(machine_delta)
    else:
        _varint(out, queue_delta)
        _varint(out, machine_delta)
    out += clock.checksum.to_bytes(4, "big")
    for idx, delta in zip(clock.idxs, clock.deltas, strict=True):
        if idx < 0x80 and delta < 0x80:
            out.append(idx)
            out.append(delta)
        else:
            _varint(out, idx)
            _varint(out, delta)


def encode_mutate(
    kind: MutationType,
    idxs: tuple[int, ...],
    needs_reply: bool,
    mutation_id: str,
    args: dict[str, Any] | None = None,
    event: MutationEvent | None = None,
    error: str | None = None,
) -> bytes:
    """Return a mutate message in binary form, from fields already checked."""
    flags = _NEEDS_REPLY if needs_reply else 0
    if args is not None:
        flags |= _HAS_ARGS
    if event is not None:
        flags |= _HAS_EVENT
    if error is not None:
        flags |= _HAS_ERROR
    out = bytearray((_MUTATE, int(kind), flags))
    _varint(out, len(idxs))
    for idx in idxs:
        _varint(out, idx)
    _text(out, mutation_id)
    if args is not None:
        _text(out, json.dumps(args, separators=(",", ":"), ensure_ascii=False))
    if event is not None:
        _text(out, event.name)
        _text(out, event.machine_id)
        _text(out, event.transition_id)
        out.append(1 if event.is_check else 0)
    if error is not None:
        _text(out, error)
    return bytes(out)


def encode_mutate_reply(result: int, clock: SetClock | None) -> bytes:
    """Return a mutate reply with a merged diff (or none) in binary form."""
    if result < 0x80:
        out = bytearray((_MUTATE_REPLY, result))
    else:
        out = bytearray((_MUTATE_REPLY,))
        _varint(out, result)
    if clock is None:
        out.append(0)
    else:
        out.append(_HAS_CLOCK)
        _clock_body(out, clock)
    return bytes(out)


def encode_binary(message: Message) -> bytes:
    """Return a set_clock, mutate or mutate_reply message in binary form.

    Raises:
        WireError: The message has no binary form (another type, or a reply
            with per-mutation updates), or a value needs more than 70 bits.
    """
    if type(message) is SetClock:
        out = bytearray((_SET_CLOCK,))
        _clock_body(out, message)
        return bytes(out)
    if type(message) is Mutate:
        return encode_mutate(
            message.kind,
            message.idxs,
            message.needs_reply,
            message.mutation_id,
            message.args,
            message.event,
            message.error,
        )
    if type(message) is MutateReply and message.mutations is None:
        return encode_mutate_reply(message.result, message.clock)
    raise WireError(
        "message",
        type(message).__name__,
        "only set_clock, mutate and a mutate_reply without per-mutation updates "
        "have a binary form",
    )


# -- decoding --------------------------------------------------------------------------


class _Reader:
    """Reads varints, bytes and texts from one binary message, checking bounds."""

    __slots__ = ("raw", "position", "prefix")

    def __init__(self, raw: bytes, prefix: str) -> None:
        self.raw = raw
        self.position = 1
        self.prefix = prefix

    def at_end(self) -> bool:
        return self.position >= len(self.raw)

    def _truncated(self, field: str) -> WireError:
        return WireError(
            f"{self.prefix}.{field}", self.raw[-40:], "truncated binary message"
        )

    def varint(self, field: str, index: int = -1) -> int:
        """Read one varint; `field` and `index` name it in errors."""
        raw = self.raw
        position = self.position
        # Most values are below 128 and take one byte.
        if position < len(raw) and raw[position] < 0x80:
            self.position = position + 1
            return raw[position]
        value = 0
        shift = 0
        name = field if index < 0 else f"{field}[{index}]"
        for offset in range(_MAX_VARINT_BYTES):
            if position + offset >= len(raw):
                raise self._truncated(name)
            byte = raw[position + offset]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.position = position + offset + 1
                return value
            shift += 7
        raise WireError(
            f"{self.prefix}.{name}",
            raw[position : position + 12],
            "varint longer than 10 bytes",
        )

    def byte(self, field: str) -> int:
        if self.position >= len(self.raw):
            raise self._truncated(field)
        value = self.raw[self.position]
        self.position += 1
        return value

    def take(self, size: int, field: str) -> bytes:
        end = self.position + size
        if end > len(self.raw):
            raise self._truncated(field)
        data = self.raw[self.position : end]
        self.position = end
        return data

    def text(self, field: str) -> str:
        data = self.take(self.varint(field), field)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError(
                f"{self.prefix}.{field}", data[:40], f"not valid UTF-8: {exc.reason}"
            ) from None


def _read_clock(reader: _Reader) -> SetClock:
    queue_delta = reader.varint("queue_tick_delta")
    machine_delta = reader.varint("machine_tick_delta")
    checksum = int.from_bytes(reader.take(4, "checksum"), "big")
    idxs: list[int] = []
    deltas: list[int] = []
    seen: set[int] = set()
    end = len(reader.raw)
    while reader.position < end:
        position = len(idxs)
        idx = reader.varint("idxs", position)
        if idx >= MAX_STATES:
            raise WireError(
                f"{reader.prefix}.idxs[{position}]",
                idx,
                f"must be at most {MAX_STATES - 1}",
            )
        if idx in seen:
            raise WireError(f"{reader.prefix}.idxs", idx, "contains duplicate indexes")
        seen.add(idx)
        idxs.append(idx)
        deltas.append(reader.varint("deltas", position))
    # Every field was checked above: varints are non-negative, the checksum
    # fits in 32 bits, the indexes are in range and unique.
    return unchecked(
        SetClock,
        idxs=tuple(idxs),
        deltas=tuple(deltas),
        queue_tick_delta=queue_delta,
        machine_tick_delta=machine_delta,
        checksum=checksum,
    )


def _reject_constant(name: str) -> None:
    raise WireError("mutate.args", name, "JSON has no NaN or infinity")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = {}
    for key, value in pairs:
        if key in result:
            raise WireError("mutate.args", key, "duplicate key in a JSON object")
        result[key] = value
    return result


def _read_args(reader: _Reader) -> Any:
    text = reader.text("args")
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except WireError:
        raise
    except (ValueError, RecursionError) as exc:
        raise WireError("mutate.args", text[:40], f"not valid JSON: {exc}") from None


def _read_small_mutate(raw: bytes) -> Mutate | None:
    """Decode a mutate without args, event or error whose numbers are below 128.

    Returns None for any other mutate, which the general reader then decodes.
    """
    size = len(raw)
    if size < 5 or raw[2] & ~_NEEDS_REPLY:
        return None
    count = raw[3]
    id_at = 4 + count
    if count >= 0x80 or id_at >= size:
        return None
    idxs = tuple(raw[4:id_at])
    id_size = raw[id_at]
    if id_size >= 0x80 or id_at + 1 + id_size != size or max(idxs, default=0) >= 0x80:
        return None
    try:
        mutation_id = raw[id_at + 1 :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _plain_mutate(raw[1], idxs, bool(raw[2]), mutation_id)


def _read_mutate(reader: _Reader) -> Mutate:
    kind = reader.byte("kind")
    flags = reader.byte("flags")
    if flags & ~(_NEEDS_REPLY | _HAS_ARGS | _HAS_EVENT | _HAS_ERROR):
        raise WireError("mutate.flags", flags, "unknown flag bits")
    count = reader.varint("idxs")
    if count > MAX_STATES:
        raise WireError(
            "mutate.idxs", f"{count} items", f"more than {MAX_STATES} items"
        )
    idxs = tuple(reader.varint("idxs", i) for i in range(count))
    mutation_id = reader.text("mutation_id")
    if not flags & ~_NEEDS_REPLY and reader.at_end():
        return _plain_mutate(kind, idxs, bool(flags), mutation_id)

    args = _read_args(reader) if flags & _HAS_ARGS else None
    event = None
    if flags & _HAS_EVENT:
        event = MutationEvent(
            reader.text("event.name"),
            reader.text("event.machine_id"),
            reader.text("event.transition_id"),
            reader.byte("event.is_check") == 1,
        )
    error = reader.text("error") if flags & _HAS_ERROR else None
    if not reader.at_end():
        raise WireError("mutate", reader.raw[reader.position :][:40], "trailing bytes")

    # The constructor checks the args, the event and the rest.
    return Mutate(
        kind,  # type: ignore[arg-type]
        idxs,
        args,
        event,
        bool(flags & _NEEDS_REPLY),
        mutation_id,
        error,
    )


def _plain_mutate(
    kind: int, idxs: tuple[int, ...], needs_reply: bool, mutation_id: str
) -> Mutate:
    """Check and build a mutate without args, event or error, the common case."""
    if kind not in _KINDS:
        raise WireError("mutate.kind", kind, "unknown code; expected 1, 2 or 3")
    for i, idx in enumerate(idxs):
        if idx >= MAX_STATES:
            raise WireError(
                f"mutate.idxs[{i}]", idx, f"must be at most {MAX_STATES - 1}"
            )
    if len(mutation_id) > MAX_NAME_LENGTH:
        raise WireError(
            "mutate.mutation_id",
            f"{len(mutation_id)} characters",
            f"longer than {MAX_NAME_LENGTH}",
        )
    # Decoded UTF-8 contains no lone surrogates, the only other check of a name.
    return unchecked(
        Mutate,
        kind=_KINDS[kind],
        idxs=idxs,
        args=None,
        event=None,
        needs_reply=needs_reply,
        mutation_id=mutation_id,
        error=None,
    )


def _read_mutate_reply(reader: _Reader) -> MutateReply:
    result = reader.varint("result")
    flags = reader.byte("flags")
    if flags & ~_HAS_CLOCK:
        raise WireError("mutate_reply.flags", flags, "unknown flag bits")
    clock = None
    if flags & _HAS_CLOCK:
        reader.prefix = "mutate_reply.clock"
        clock = _read_clock(reader)
    elif not reader.at_end():
        raise WireError(
            "mutate_reply", reader.raw[reader.position :][:40], "trailing bytes"
        )
    return unchecked(MutateReply, result=result, clock=clock, mutations=None)


def decode_binary(raw: bytes) -> Message:
    """Decode a message in binary form; its first byte is one of BINARY_TAGS.

    Raises:
        WireError: The message is truncated or a field is invalid.
    """
    tag = raw[0]
    if tag == _SET_CLOCK:
        return _read_clock(_Reader(raw, "set_clock"))
    if tag == _MUTATE:
        return _read_small_mutate(raw) or _read_mutate(_Reader(raw, "mutate"))
    if tag == _MUTATE_REPLY:
        return _read_mutate_reply(_Reader(raw, "mutate_reply"))
    raise WireError("type", tag, "unknown binary message tag")

"""Versioned wire codec of the sync protocol between a state source and its mirrors.

Messages travel by value as bytes: compact JSON (standard library only, so it runs
in Pyodide) containing one positional array ``[version, type, *fields]``. Positional
arrays keep frequent messages small: a clock diff that changes one state (index
and delta below 10) encodes to at most 24 bytes, up to 10 of which are the CRC-32
checksum. Decoding is strict: every field's type, range, length and size is
checked, and any problem raises :class:`WireError` naming the field and the bad
value. Constructors run the same checks, so an invalid message cannot be built.

The messages of every change (:class:`SetClock`, :class:`Mutate` and
:class:`MutateReply`) also have a compact binary form (:func:`encode_binary`, see
``_wire_binary``): a one-state clock diff takes 9 bytes. :func:`decode` reads both
forms. Fields in brackets below are optional trailing fields: a message
without them keeps the shorter layout.

Message types (``code``: class, wire fields after version and type):

====  ===================  =====================================================
code  class                fields
====  ===================  =====================================================
1     Hello                machine_id, sync_schema, schema_hash, allowed_states,
                           skipped_states, shallow_clocks, sync_mutations,
                           [token, source_id]
2     HelloReply           machine_id, state_names, time, queue_tick,
                           machine_tick, states_count, schema
3     Handshake            (none)
4     Ack                  (none)
5     Mutate               kind, idxs, args, event, needs_reply,
                           [mutation_id, error]
6     MutateReply          result, clock, mutations
7     Sync                 (none)
8     SyncReply            time, queue_tick, machine_tick
9     SetClock             queue_tick_delta, machine_tick_delta, checksum,
                           then index and delta pairs
10    SetClockMany         mutations: [kind, called, clock] per mutation
11    Payload              name, destination, data, token, source, source_tx
12    SchemaChange         same fields as HelloReply
13    Bye                  reason
14    ErrorMessage         code, message
15    ArgsNames            (none)
16    ArgsNamesReply       names
====  ===================  =====================================================

Usage::

    data = SetClock(idxs=(3,), deltas=(1,), queue_tick_delta=1,
                    checksum=clock_checksum(time, queue_tick)).encode()
    message = decode(data)   # a SetClock, or WireError
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

from ._wire_fields import (
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    MAX_STATES,
    MAX_TEXT_LENGTH,
    STATE_FIELDS,
    WireError,
    check_args,
    check_bool,
    check_enum,
    check_index_list,
    check_int,
    check_int_list,
    check_json_value,
    check_name_list,
    check_optional,
    check_schema,
    check_sequence,
    check_str,
    expect_fields,
    set_field,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_SIZE",
    "MAX_NAME_LENGTH",
    "MAX_STATES",
    "MAX_TEXT_LENGTH",
    "STATE_FIELDS",
    "WIRE_VERSION",
    "Ack",
    "ArgsNames",
    "ArgsNamesReply",
    "Bye",
    "ErrorMessage",
    "Handshake",
    "Hello",
    "HelloReply",
    "Message",
    "MessageType",
    "Mutate",
    "MutateReply",
    "MutationEvent",
    "MutationType",
    "MutationUpdate",
    "Payload",
    "SchemaChange",
    "SetClock",
    "SetClockMany",
    "Sync",
    "SyncReply",
    "WireError",
    "clock_checksum",
    "decode",
    "encode",
    "encode_binary",
]

WIRE_VERSION = 1
"""Version written into every message; decoding rejects any other."""

MAX_MESSAGE_SIZE = 1 << 20
"""Default size limit of an encoded message in bytes (1 MiB)."""

_CHECKSUM_LIMIT = 1 << 32


class MessageType(IntEnum):
    """Type codes of the wire messages."""

    HELLO = 1
    HELLO_REPLY = 2
    HANDSHAKE = 3
    ACK = 4
    MUTATE = 5
    MUTATE_REPLY = 6
    SYNC = 7
    SYNC_REPLY = 8
    SET_CLOCK = 9
    SET_CLOCK_MANY = 10
    PAYLOAD = 11
    SCHEMA_CHANGE = 12
    BYE = 13
    ERROR = 14
    ARGS_NAMES = 15
    ARGS_NAMES_REPLY = 16


class MutationType(IntEnum):
    """Mutation types a mirror requests from its source."""

    ADD = 1
    REMOVE = 2
    SET = 3


# -- messages --------------------------------------------------------------------------

_MessageT = TypeVar("_MessageT", bound="Message")


class Message:
    """Base of all wire messages: encoding, decoding and the type code."""

    TYPE: ClassVar[MessageType]

    @classmethod
    def _name(cls) -> str:
        return cls.TYPE.name.lower()

    def _body(self) -> list[Any]:
        return []

    @classmethod
    def _from_body(cls: type[_MessageT], body: list[Any]) -> _MessageT:
        expect_fields(cls._name(), body, 0)
        return cls()

    def encode(self, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
        """Return the message as compact JSON bytes (see :func:`encode`)."""
        return encode(self, max_size=max_size)

    @classmethod
    def decode(
        cls: type[_MessageT], data: bytes, *, max_size: int = MAX_MESSAGE_SIZE
    ) -> _MessageT:
        """Decode bytes that must hold a message of this class.

        Raises:
            WireError: The bytes are invalid or hold another message type.
        """
        message = decode(data, max_size=max_size)
        if type(message) is not cls:
            raise WireError(
                "type", message.TYPE.value, f"expected a {cls._name()} message"
            )
        return message


@dataclass(frozen=True)
class Hello(Message):
    """Mirror to source: first handshake step, with the mirror's sync options."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO

    machine_id: str
    sync_schema: bool = True
    schema_hash: str = ""
    allowed_states: tuple[str, ...] | None = None
    skipped_states: tuple[str, ...] | None = None
    shallow_clocks: bool = False
    sync_mutations: bool = False
    token: str = ""
    source_id: str = ""

    def __post_init__(self) -> None:
        prefix = self._name()
        check_str(f"{prefix}.machine_id", self.machine_id, empty=False)
        check_bool(f"{prefix}.sync_schema", self.sync_schema)
        check_str(f"{prefix}.schema_hash", self.schema_hash)
        for name in ("allowed_states", "skipped_states"):
            value = check_optional(
                check_name_list, f"{prefix}.{name}", getattr(self, name)
            )
            set_field(self, name, value)
        check_bool(f"{prefix}.shallow_clocks", self.shallow_clocks)
        check_bool(f"{prefix}.sync_mutations", self.sync_mutations)
        check_str(f"{prefix}.token", self.token)
        check_str(f"{prefix}.source_id", self.source_id)

    def _body(self) -> list[Any]:
        body = [
            self.machine_id,
            self.sync_schema,
            self.schema_hash,
            _list_or_none(self.allowed_states),
            _list_or_none(self.skipped_states),
            self.shallow_clocks,
            self.sync_mutations,
        ]
        # The last two fields are optional on the wire: a hello without a token
        # and a source id has seven fields.
        if self.token or self.source_id:
            body += [self.token, self.source_id]
        return body

    @classmethod
    def _from_body(cls, body: list[Any]) -> Hello:
        if len(body) != 9:
            expect_fields(cls._name(), body, 7)
        return cls(*body)


@dataclass(frozen=True)
class _ClockExport(Message):
    """A source's state names, clock and optionally schema (hello reply shape)."""

    machine_id: str
    state_names: tuple[str, ...]
    time: tuple[int, ...]
    queue_tick: int
    machine_tick: int
    states_count: int
    schema: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        prefix = self._name()
        check_str(f"{prefix}.machine_id", self.machine_id, empty=False)
        names = check_name_list(f"{prefix}.state_names", self.state_names, unique=True)
        set_field(self, "state_names", names)
        time = check_int_list(f"{prefix}.time", self.time)
        if len(time) != len(names):
            raise WireError(
                f"{prefix}.time",
                f"{len(time)} ticks",
                f"expected one tick per state name ({len(names)})",
            )
        set_field(self, "time", time)
        check_int(f"{prefix}.queue_tick", self.queue_tick)
        check_int(f"{prefix}.machine_tick", self.machine_tick)
        check_int(f"{prefix}.states_count", self.states_count, len(names), MAX_STATES)
        schema = check_optional(check_schema, f"{prefix}.schema", self.schema)
        if schema is not None:
            for name in names:
                if name not in schema:
                    raise WireError(
                        f"{prefix}.state_names", name, "state missing from the schema"
                    )
        set_field(self, "schema", schema)

    def _body(self) -> list[Any]:
        return [
            self.machine_id,
            list(self.state_names),
            list(self.time),
            self.queue_tick,
            self.machine_tick,
            self.states_count,
            _schema_to_json(self.schema),
        ]

    @classmethod
    def _from_body(cls, body: list[Any]) -> Any:
        expect_fields(cls._name(), body, 7)
        return cls(*body)


@dataclass(frozen=True)
class HelloReply(_ClockExport):
    """Source to mirror: the source's names, clock and (if asked) schema."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO_REPLY


@dataclass(frozen=True)
class SchemaChange(_ClockExport):
    """Source to mirror: the source's schema changed; replaces names and clock."""

    TYPE: ClassVar[MessageType] = MessageType.SCHEMA_CHANGE


@dataclass(frozen=True)
class Handshake(Message):
    """Mirror to source: second handshake step; the source starts pushing."""

    TYPE: ClassVar[MessageType] = MessageType.HANDSHAKE


@dataclass(frozen=True)
class Ack(Message):
    """Empty positive reply, e.g. to a handshake, payload or bye."""

    TYPE: ClassVar[MessageType] = MessageType.ACK


@dataclass(frozen=True)
class Sync(Message):
    """Mirror to source: request for the full clock, sent after a checksum mismatch."""

    TYPE: ClassVar[MessageType] = MessageType.SYNC


@dataclass(frozen=True)
class ArgsNames(Message):
    """Request for the names of the typed args the source accepts."""

    TYPE: ClassVar[MessageType] = MessageType.ARGS_NAMES


@dataclass(frozen=True)
class MutationEvent:
    """The handler event that caused a mutation, sent along with it."""

    name: str
    machine_id: str
    transition_id: str
    is_check: bool = False

    def _check(self, field: str) -> None:
        check_str(f"{field}.name", self.name, empty=False)
        check_str(f"{field}.machine_id", self.machine_id, empty=False)
        check_str(f"{field}.transition_id", self.transition_id)
        check_bool(f"{field}.is_check", self.is_check)

    def _body(self) -> list[Any]:
        return [self.name, self.machine_id, self.transition_id, self.is_check]

    @classmethod
    def _from_json(cls, field: str, value: Any) -> MutationEvent:
        items = check_sequence(field, value)
        expect_fields(field, items, 4)
        event = cls(*items)
        event._check(field)
        return event


@dataclass(frozen=True)
class Mutate(Message):
    """Mirror to source: add, remove or set states by index, with args.

    With ``needs_reply=False`` the message is a notification: the source sends no
    reply.

    Attributes:
        mutation_id: Id chosen by the mirror, unique per client id, or "" for
            none. A source that already applied a mutation with this id returns
            the stored result instead of applying it again, so resending after a
            lost reply is safe.
        error: Only with kind ADD: the message of an error raised through the
            mirror (``add_err``). The source adds the states of ``idxs`` as
            error states with this error.
    """

    TYPE: ClassVar[MessageType] = MessageType.MUTATE

    kind: MutationType
    idxs: tuple[int, ...]
    args: dict[str, Any] | None = None
    event: MutationEvent | None = None
    needs_reply: bool = True
    mutation_id: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        prefix = self._name()
        set_field(self, "kind", check_enum(f"{prefix}.kind", self.kind, MutationType))
        set_field(self, "idxs", check_index_list(f"{prefix}.idxs", self.idxs))
        set_field(self, "args", check_optional(check_args, f"{prefix}.args", self.args))
        if self.event is not None:
            if not isinstance(self.event, MutationEvent):
                raise WireError(
                    f"{prefix}.event", self.event, "expected a MutationEvent"
                )
            self.event._check(f"{prefix}.event")
        check_bool(f"{prefix}.needs_reply", self.needs_reply)
        check_str(f"{prefix}.mutation_id", self.mutation_id)
        if self.error is not None:
            check_str(f"{prefix}.error", self.error, MAX_TEXT_LENGTH)
            if self.kind is not MutationType.ADD:
                raise WireError(
                    f"{prefix}.error", self.error, "only an add mutation carries one"
                )

    def _body(self) -> list[Any]:
        body = [
            int(self.kind),
            list(self.idxs),
            self.args,
            None if self.event is None else self.event._body(),
            self.needs_reply,
        ]
        # The last two fields are optional on the wire, as in Hello.
        if self.mutation_id or self.error is not None:
            body += [self.mutation_id, self.error]
        return body

    @classmethod
    def _from_body(cls, body: list[Any]) -> Mutate:
        prefix = cls._name()
        if len(body) != 7:
            expect_fields(prefix, body, 5)
        kind, idxs, args, event, needs_reply = body[:5]
        if event is not None:
            event = MutationEvent._from_json(f"{prefix}.event", event)
        return cls(kind, idxs, args, event, needs_reply, *body[5:])


@dataclass(frozen=True)
class SetClock(Message):
    """Source to mirror: a clock diff, also carried inside mutation replies.

    Ticks only grow, so every delta is non-negative. A source whose ticks went
    down (e.g. after an import) sends :class:`SchemaChange` instead, or a
    :class:`SyncReply` when the mirror sends :class:`Sync`. ``checksum`` is
    :func:`clock_checksum` of the clock after the diff.
    """

    TYPE: ClassVar[MessageType] = MessageType.SET_CLOCK

    idxs: tuple[int, ...] = ()
    deltas: tuple[int, ...] = ()
    queue_tick_delta: int = 0
    machine_tick_delta: int = 0
    checksum: int = 0

    def __post_init__(self) -> None:
        self._check(self._name())

    def _check(self, prefix: str) -> None:
        idxs = check_index_list(f"{prefix}.idxs", self.idxs, unique=True)
        deltas = check_int_list(f"{prefix}.deltas", self.deltas)
        if len(deltas) != len(idxs):
            raise WireError(
                f"{prefix}.deltas",
                f"{len(deltas)} deltas",
                f"expected one delta per index ({len(idxs)})",
            )
        set_field(self, "idxs", idxs)
        set_field(self, "deltas", deltas)
        check_int(f"{prefix}.queue_tick_delta", self.queue_tick_delta)
        check_int(f"{prefix}.machine_tick_delta", self.machine_tick_delta)
        check_int(f"{prefix}.checksum", self.checksum, 0, _CHECKSUM_LIMIT - 1)

    def _body(self) -> list[Any]:
        body = [self.queue_tick_delta, self.machine_tick_delta, self.checksum]
        for idx, delta in zip(self.idxs, self.deltas, strict=True):
            body.append(idx)
            body.append(delta)
        return body

    @classmethod
    def _from_body(cls, body: list[Any]) -> SetClock:
        return cls._from_fields(cls._name(), body)

    @classmethod
    def _from_fields(cls, prefix: str, body: Any) -> SetClock:
        items = check_sequence(prefix, body, 3 + 2 * MAX_STATES)
        if len(items) < 3 or len(items) % 2 == 0:
            raise WireError(
                prefix,
                f"{len(items)} fields",
                "expected 3 fields followed by index and delta pairs",
            )
        return cls(
            idxs=tuple(items[3::2]),
            deltas=tuple(items[4::2]),
            queue_tick_delta=items[0],
            machine_tick_delta=items[1],
            checksum=items[2],
        )

    def encode_binary(self) -> bytes:
        """Return the diff in the compact binary form (see :func:`encode_binary`)."""
        return _wire_binary.encode_binary(self)

    @classmethod
    def between(
        cls,
        before: Sequence[int],
        after: Sequence[int],
        queue_ticks: tuple[int, int],
        machine_ticks: tuple[int, int] = (0, 0),
    ) -> SetClock:
        """Build the diff that turns one clock into another.

        Args:
            before: Ticks last sent to the mirror.
            after: Current ticks, same length.
            queue_ticks: Queue tick before and after.
            machine_ticks: Machine tick before and after.

        Raises:
            ValueError: The clocks differ in length, or a tick went down (send
                the full clock instead).
        """
        if len(before) != len(after):
            raise ValueError(
                f"clocks differ in length: {len(before)} and {len(after)} ticks"
            )
        idxs = []
        deltas = []
        idx = 0
        for old, new in zip(before, after, strict=True):
            if new != old:
                if new < old:
                    raise ValueError(
                        f"tick of state {idx} went down from {old} to {new}; "
                        "send the full clock instead of a diff"
                    )
                idxs.append(idx)
                deltas.append(new - old)
            idx += 1
        queue_delta = queue_ticks[1] - queue_ticks[0]
        machine_delta = machine_ticks[1] - machine_ticks[0]
        if queue_delta < 0 or machine_delta < 0:
            raise ValueError(
                f"queue or machine tick went down ({queue_ticks}, {machine_ticks}); "
                "send the full clock instead of a diff"
            )
        # The fields are computed here and valid: skip the constructor's checks.
        return unchecked(
            cls,
            idxs=tuple(idxs),
            deltas=tuple(deltas),
            queue_tick_delta=queue_delta,
            machine_tick_delta=machine_delta,
            checksum=clock_checksum(after, queue_ticks[1], machine_ticks[1]),
        )

    def apply_to(
        self, time: Sequence[int], queue_tick: int, machine_tick: int = 0
    ) -> tuple[tuple[int, ...], int, int]:
        """Return the clock after this diff: (time, queue tick, machine tick).

        Compare :func:`clock_checksum` of the result with :attr:`checksum`; on a
        mismatch, request a full :class:`Sync`.

        Raises:
            WireError: An index is outside the given clock.
        """
        ticks = list(time)
        for position, (idx, delta) in enumerate(
            zip(self.idxs, self.deltas, strict=True)
        ):
            if idx >= len(ticks):
                raise WireError(
                    f"set_clock.idxs[{position}]",
                    idx,
                    f"index outside the mirror's {len(ticks)} states",
                )
            ticks[idx] += delta
        return (
            tuple(ticks),
            queue_tick + self.queue_tick_delta,
            machine_tick + self.machine_tick_delta,
        )


@dataclass(frozen=True)
class MutationUpdate:
    """One source mutation in per-mutation sync: its kind, called states and diff."""

    kind: MutationType
    called: tuple[int, ...]
    clock: SetClock

    def _check(self, field: str) -> None:
        set_field(self, "kind", check_enum(f"{field}.kind", self.kind, MutationType))
        set_field(self, "called", check_index_list(f"{field}.called", self.called))
        if not isinstance(self.clock, SetClock):
            raise WireError(f"{field}.clock", self.clock, "expected a SetClock")

    def _body(self) -> list[Any]:
        return [int(self.kind), list(self.called), self.clock._body()]

    @classmethod
    def _from_json(cls, field: str, value: Any) -> MutationUpdate:
        items = check_sequence(field, value)
        expect_fields(field, items, 3)
        kind, called, clock = items
        update = cls(kind, called, SetClock._from_fields(f"{field}.clock", clock))
        update._check(field)
        return update


def _check_mutation_updates(field: str, value: Any) -> tuple[MutationUpdate, ...]:
    items = check_sequence(field, value)
    for i, item in enumerate(items):
        if not isinstance(item, MutationUpdate):
            raise WireError(f"{field}[{i}]", item, "expected a MutationUpdate")
        item._check(f"{field}[{i}]")
    return tuple(items)


def _mutation_updates_from_json(field: str, value: Any) -> tuple[MutationUpdate, ...]:
    items = check_sequence(field, value)
    return tuple(
        MutationUpdate._from_json(f"{field}[{i}]", item) for i, item in enumerate(items)
    )


@dataclass(frozen=True)
class SetClockMany(Message):
    """Source to mirror: one diff per source mutation, applied in order."""

    TYPE: ClassVar[MessageType] = MessageType.SET_CLOCK_MANY

    mutations: tuple[MutationUpdate, ...]

    def __post_init__(self) -> None:
        updates = _check_mutation_updates(f"{self._name()}.mutations", self.mutations)
        set_field(self, "mutations", updates)

    def _body(self) -> list[Any]:
        return [[update._body() for update in self.mutations]]

    @classmethod
    def _from_body(cls, body: list[Any]) -> SetClockMany:
        prefix = cls._name()
        expect_fields(prefix, body, 1)
        return cls(_mutation_updates_from_json(f"{prefix}.mutations", body[0]))


@dataclass(frozen=True)
class MutateReply(Message):
    """Source to mirror: a mutation's result with the clock diff since the last push.

    ``result`` is the source's return value (executed, canceled or a queue tick).
    At most one of ``clock`` (merged diff) and ``mutations`` (per-mutation sync)
    is set.
    """

    TYPE: ClassVar[MessageType] = MessageType.MUTATE_REPLY

    result: int
    clock: SetClock | None = None
    mutations: tuple[MutationUpdate, ...] | None = None

    def __post_init__(self) -> None:
        prefix = self._name()
        check_int(f"{prefix}.result", self.result)
        if self.clock is not None and not isinstance(self.clock, SetClock):
            raise WireError(f"{prefix}.clock", self.clock, "expected a SetClock")
        mutations = check_optional(
            _check_mutation_updates, f"{prefix}.mutations", self.mutations
        )
        if self.clock is not None and mutations is not None:
            raise WireError(
                f"{prefix}.mutations", "both set", "send either clock or mutations"
            )
        set_field(self, "mutations", mutations)

    def _body(self) -> list[Any]:
        return [
            self.result,
            None if self.clock is None else self.clock._body(),
            None
            if self.mutations is None
            else [update._body() for update in self.mutations],
        ]

    @classmethod
    def _from_body(cls, body: list[Any]) -> MutateReply:
        prefix = cls._name()
        expect_fields(prefix, body, 3)
        result, clock, mutations = body
        if clock is not None:
            clock = SetClock._from_fields(f"{prefix}.clock", clock)
        if mutations is not None:
            mutations = _mutation_updates_from_json(f"{prefix}.mutations", mutations)
        return cls(result, clock, mutations)


@dataclass(frozen=True)
class SyncReply(Message):
    """Source to mirror: the full clock, the reply to :class:`Sync`."""

    TYPE: ClassVar[MessageType] = MessageType.SYNC_REPLY

    time: tuple[int, ...]
    queue_tick: int
    machine_tick: int

    def __post_init__(self) -> None:
        prefix = self._name()
        set_field(self, "time", check_int_list(f"{prefix}.time", self.time))
        check_int(f"{prefix}.queue_tick", self.queue_tick)
        check_int(f"{prefix}.machine_tick", self.machine_tick)

    def _body(self) -> list[Any]:
        return [list(self.time), self.queue_tick, self.machine_tick]

    @classmethod
    def _from_body(cls, body: list[Any]) -> SyncReply:
        expect_fields(cls._name(), body, 3)
        return cls(*body)


@dataclass(frozen=True)
class Payload(Message):
    """Source to mirror: data for the mirror's consumer.

    Attributes:
        name: Payload kind the consumer dispatches on.
        data: Any JSON-compatible value.
        destination: Id of the intended client, or "" for any.
        token: Random token chosen by the source.
        source: Id of the machine whose event sent the payload.
        source_tx: Id of that event's transition.
    """

    TYPE: ClassVar[MessageType] = MessageType.PAYLOAD

    name: str
    data: Any = None
    destination: str = ""
    token: str = ""
    source: str = ""
    source_tx: str = ""

    def __post_init__(self) -> None:
        prefix = self._name()
        check_str(f"{prefix}.name", self.name, empty=False)
        set_field(self, "data", check_json_value(f"{prefix}.data", self.data))
        for name in ("destination", "token", "source", "source_tx"):
            check_str(f"{prefix}.{name}", getattr(self, name))

    def _body(self) -> list[Any]:
        return [
            self.name,
            self.destination,
            self.data,
            self.token,
            self.source,
            self.source_tx,
        ]

    @classmethod
    def _from_body(cls, body: list[Any]) -> Payload:
        expect_fields(cls._name(), body, 6)
        name, destination, data, token, source, source_tx = body
        return cls(name, data, destination, token, source, source_tx)


@dataclass(frozen=True)
class Bye(Message):
    """Either side: the sender is about to disconnect."""

    TYPE: ClassVar[MessageType] = MessageType.BYE

    reason: str = ""

    def __post_init__(self) -> None:
        check_str(f"{self._name()}.reason", self.reason, MAX_TEXT_LENGTH)

    def _body(self) -> list[Any]:
        return [self.reason]

    @classmethod
    def _from_body(cls, body: list[Any]) -> Bye:
        expect_fields(cls._name(), body, 1)
        return cls(*body)


@dataclass(frozen=True)
class ErrorMessage(Message):
    """Either side: a request failed.

    Attributes:
        code: Short machine-readable error name, e.g. ``no_access``.
        message: Human-readable description.
    """

    TYPE: ClassVar[MessageType] = MessageType.ERROR

    code: str
    message: str = ""

    def __post_init__(self) -> None:
        prefix = self._name()
        check_str(f"{prefix}.code", self.code, empty=False)
        check_str(f"{prefix}.message", self.message, MAX_TEXT_LENGTH)

    def _body(self) -> list[Any]:
        return [self.code, self.message]

    @classmethod
    def _from_body(cls, body: list[Any]) -> ErrorMessage:
        expect_fields(cls._name(), body, 2)
        return cls(*body)


@dataclass(frozen=True)
class ArgsNamesReply(Message):
    """The names of the typed args the source accepts, e.g. ``Msg.msg``."""

    TYPE: ClassVar[MessageType] = MessageType.ARGS_NAMES_REPLY

    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_field(self, "names", check_name_list(f"{self._name()}.names", self.names))

    def _body(self) -> list[Any]:
        return [list(self.names)]

    @classmethod
    def _from_body(cls, body: list[Any]) -> ArgsNamesReply:
        expect_fields(cls._name(), body, 1)
        return cls(*body)


_MESSAGE_CLASSES: dict[int, type[Message]] = {
    cls.TYPE.value: cls
    for cls in (
        Hello,
        HelloReply,
        Handshake,
        Ack,
        Mutate,
        MutateReply,
        Sync,
        SyncReply,
        SetClock,
        SetClockMany,
        Payload,
        SchemaChange,
        Bye,
        ErrorMessage,
        ArgsNames,
        ArgsNamesReply,
    )
}


def _list_or_none(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _schema_to_json(schema: dict[str, dict[str, Any]] | None) -> Any:
    if schema is None:
        return None
    return {
        name: {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in state.items()
        }
        for name, state in schema.items()
    }


# -- encoding and decoding -------------------------------------------------------------


def encode(message: Message, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Return a message as compact UTF-8 JSON: ``[version, type, *fields]``.

    Raises:
        WireError: The encoded message is larger than max_size, or an int is too
            large for JSON conversion.
    """
    if not isinstance(message, Message) or type(message) not in _ENCODABLE:
        raise WireError("message", message, "expected a wire message instance")
    document = [WIRE_VERSION, message.TYPE.value, *message._body()]
    try:
        text = json.dumps(
            document, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise WireError(message._name(), message, f"cannot encode: {exc}") from exc
    data = text.encode("utf-8")
    if len(data) > max_size:
        raise WireError(
            message._name(),
            f"{len(data)} bytes",
            f"larger than the limit of {max_size}",
        )
    return data


_ENCODABLE = frozenset(_MESSAGE_CLASSES.values())


def _reject_constant(name: str) -> None:
    raise WireError("message", name, "JSON has no NaN or infinity")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = {}
    for key, value in pairs:
        if key in result:
            raise WireError("message", key, "duplicate key in a JSON object")
        result[key] = value
    return result


def decode(
    data: bytes | bytearray | memoryview, *, max_size: int = MAX_MESSAGE_SIZE
) -> Message:
    """Decode and validate one message.

    Raises:
        WireError: The bytes are not valid UTF-8 JSON, exceed max_size, carry
            another wire version or an unknown type, or a field is invalid. The
            error names the field and the bad value.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError("message", type(data).__name__, "expected bytes")
    raw = bytes(data)
    if len(raw) > max_size:
        raise WireError(
            "message", f"{len(raw)} bytes", f"larger than the limit of {max_size}"
        )
    if raw[:1] in _wire_binary.BINARY_TAGS:
        return _wire_binary.decode_binary(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("message", raw[:40], f"not valid UTF-8: {exc.reason}") from None
    try:
        document = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except WireError:
        raise
    except (ValueError, RecursionError) as exc:
        raise WireError("message", raw[:40], f"not valid JSON: {exc}") from None

    if type(document) is not list or len(document) < 2:
        raise WireError(
            "message", document, "expected a JSON array [version, type, fields...]"
        )
    version, code = document[0], document[1]
    if type(version) is not int or version != WIRE_VERSION:
        raise WireError(
            "version", version, f"unsupported wire version; expected {WIRE_VERSION}"
        )
    message_class = _MESSAGE_CLASSES.get(code) if type(code) is int else None
    if message_class is None:
        raise WireError("type", code, "unknown message type")
    return message_class._from_body(document[2:])


def clock_checksum(time: Sequence[int], queue_tick: int, machine_tick: int = 0) -> int:
    """Return a CRC-32 of a clock, for detecting a mirror out of sync.

    The canonical text is ``"<queue tick>;<machine tick>;<t0>,<t1>,..."`` in
    ASCII, so any implementation can compute the same value.
    """
    text = f"{queue_tick};{machine_tick};" + ",".join(map(str, time))
    return zlib.crc32(text.encode("ascii"))


def unchecked(cls: type[_MessageT], **fields: Any) -> _MessageT:
    """Build a message without running its checks, from values known to be valid.

    Only for values computed from this end's own state, such as a source's clock
    diffs, or for received values already checked field by field. Everything else
    goes through the constructors' checks.
    """
    message = object.__new__(cls)
    # A frozen dataclass stores its fields in __dict__; writing it directly
    # skips the frozen __setattr__, as the constructors' set_field does.
    message.__dict__.update(fields)
    return message


# Imported last: the binary codec builds the message classes defined above.
from . import _wire_binary  # noqa: E402
from ._wire_binary import encode_binary  # noqa: E402

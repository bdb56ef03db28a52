"""Wire additions of the sync protocol: binary forms and optional trailing fields."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from asyncmachine.rpc.wire import (  # noqa: E402
    MAX_STATES,
    Hello,
    Message,
    Mutate,
    MutateReply,
    MutationEvent,
    MutationType,
    SetClock,
    WireError,
    decode,
    encode_binary,
)

CLOCK = SetClock(idxs=(3,), deltas=(1,), queue_tick_delta=1, checksum=2**32 - 1)
BINARY_EXAMPLES = [
    SetClock(),
    CLOCK,
    SetClock((0, 200, 65534), (1, 2**64, 3), 2**40, 7, 12345),
    Mutate(MutationType.ADD, (2,), None, None, True, "3f2a9c1e-17"),
    Mutate(MutationType.REMOVE, (), None, None, False, ""),
    Mutate(
        MutationType.SET,
        (1, 300),
        {"msg": "żółw", "n": [1, 2.5, None, {"x": True}]},
        MutationEvent("SubmitMsgState", "browser-bar-k3j", "1f", is_check=True),
        True,
        "id-2",
    ),
    Mutate(MutationType.ADD, (0,), None, None, True, "id-3", "ValueError: boom"),
    MutateReply(0, CLOCK),
    MutateReply(12),
]


@pytest.mark.parametrize("message", BINARY_EXAMPLES, ids=lambda m: type(m).__name__)
def test_binary_round_trip(message):
    data = encode_binary(message)
    assert data[0] in (0xA1, 0xA2, 0xA3)
    assert decode(data) == message


def test_binary_set_clock_size():
    assert len(encode_binary(CLOCK)) == 9
    assert len(CLOCK.encode_binary()) == 9


def test_binary_reply_with_updates_is_json_only():
    reply = MutateReply(0, None, ())
    with pytest.raises(WireError, match="binary form"):
        encode_binary(reply)
    with pytest.raises(WireError):
        encode_binary(Hello("x"))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\xa1", "set_clock.queue_tick_delta"),
        (b"\xa1\x00\x00\x00\x00", "set_clock.checksum"),
        (b"\xa1\x00\x00\x00\x00\x00\x00\x01", "set_clock.deltas[0]"),
        (b"\xa1\x00\x00\x00\x00\x00\x00\x01\x01\x01\x01", "set_clock.idxs"),
        (b"\xa1\x00\x00\x00\x00\x00\x00\xff\xff\x03\x01", "set_clock.idxs[0]"),
        (b"\xa1" + b"\xff" * 11, "set_clock.queue_tick_delta"),
        (b"\xa2\x07\x01\x00\x00", "mutate.kind"),
        (b"\xa2\x01\x40\x00\x00", "mutate.flags"),
        (b"\xa2\x01\x01\x00\x00\x00", "mutate"),
        (b"\xa2\x01\x03\x00\x00\x03[1]", "mutate.args"),
        (b'\xa2\x01\x03\x00\x00\x05{"a":', "mutate.args"),
        (b"\xa2\x01\x01\x00\x02\xff\xfe", "mutate.mutation_id"),
        (b"\xa2\x02\x09\x00\x00\x01e", "mutate.error"),
        (b"\xa3\x00\x02", "mutate_reply.flags"),
        (b"\xa3\x00\x00\x01", "mutate_reply"),
        (b"\xa3\x00\x01\x00", "mutate_reply.clock.machine_tick_delta"),
    ],
)
def test_binary_decode_rejects_invalid_message(data, field):
    with pytest.raises(WireError) as raised:
        decode(data)
    assert raised.value.field == field


def test_optional_trailing_fields_round_trip():
    hello = Hello("bar", token="t0ken", source_id="server-foo")
    assert decode(hello.encode()) == hello
    assert decode(Hello("bar").encode()) == Hello("bar")
    mutate = Mutate(MutationType.ADD, (1,), None, None, True, "id-1", "boom")
    assert decode(mutate.encode()) == mutate


def test_optional_trailing_fields_keep_short_layout():
    assert Hello("x").encode() == b'[1,1,"x",true,"",null,null,false,false]'
    assert (
        Mutate(MutationType.ADD, (1,), None).encode() == b"[1,5,1,[1],null,null,true]"
    )


def test_mutate_error_needs_add():
    with pytest.raises(WireError) as raised:
        Mutate(MutationType.REMOVE, (1,), None, None, True, "id", "boom")
    assert raised.value.field == "mutate.error"


def test_mutate_rejects_wrong_field_count():
    with pytest.raises(WireError) as raised:
        decode(b'[1,5,1,[1],null,null,true,"id"]')
    assert raised.value.field == "mutate"


indexes = st.integers(min_value=0, max_value=MAX_STATES - 1)
ticks = st.integers(min_value=0, max_value=2**64)
names = st.text(min_size=1, max_size=20).filter(
    lambda text: all(not 0xD800 <= ord(char) <= 0xDFFF for char in text)
)


@st.composite
def set_clocks(draw):
    idxs = draw(st.lists(indexes, max_size=8, unique=True))
    deltas = draw(st.lists(ticks, min_size=len(idxs), max_size=len(idxs)))
    return SetClock(
        tuple(idxs),
        tuple(deltas),
        draw(ticks),
        draw(ticks),
        draw(st.integers(min_value=0, max_value=2**32 - 1)),
    )


binary_messages = st.one_of(
    set_clocks(),
    st.builds(
        Mutate,
        st.sampled_from(MutationType),
        st.lists(indexes, max_size=6).map(tuple),
        st.none() | st.dictionaries(names, st.integers() | names, max_size=3),
        st.none() | st.builds(MutationEvent, names, names, names, st.booleans()),
        st.booleans(),
        names,
    ),
    st.builds(MutateReply, ticks, st.none() | set_clocks()),
)


@settings(max_examples=150, deadline=None)
@given(binary_messages)
def test_binary_round_trip_property(message):
    assert decode(encode_binary(message)) == message


def check_outcome(data: bytes) -> None:
    try:
        result = decode(data)
    except WireError:
        return
    assert isinstance(result, Message)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\xa1", b"\xa2", b"\xa3"]), st.binary(max_size=60))
def test_random_binary_only_raises_wire_error(tag, body):
    check_outcome(tag + body)


@settings(max_examples=200, deadline=None)
@given(binary_messages, st.data())
def test_mutated_binary_only_raises_wire_error(message, data):
    encoded = bytearray(encode_binary(message))
    position = data.draw(st.integers(min_value=1, max_value=max(1, len(encoded) - 1)))
    if position < len(encoded):
        encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded)))
    check_outcome(bytes(encoded[:cut]))

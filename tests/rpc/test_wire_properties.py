"""Property tests of the wire codec: round trips, and decode never crashes."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from asyncmachine.rpc.wire import (  # noqa: E402
    MAX_STATES,
    ArgsNamesReply,
    Bye,
    ErrorMessage,
    Hello,
    HelloReply,
    Message,
    MessageType,
    Mutate,
    MutateReply,
    MutationEvent,
    MutationType,
    MutationUpdate,
    Payload,
    SchemaChange,
    SetClock,
    SetClockMany,
    SyncReply,
    WireError,
    decode,
)

names = st.text(min_size=1, max_size=20).filter(
    lambda text: all(not 0xD800 <= ord(char) <= 0xDFFF for char in text)
)
texts = st.text(max_size=40).filter(
    lambda text: all(not 0xD800 <= ord(char) <= 0xDFFF for char in text)
)
ticks = st.integers(min_value=0, max_value=2**64)
indexes = st.integers(min_value=0, max_value=MAX_STATES - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def set_clocks(draw):
    idxs = draw(st.lists(indexes, max_size=8, unique=True))
    deltas = draw(st.lists(ticks, min_size=len(idxs), max_size=len(idxs)))
    return SetClock(
        idxs=tuple(idxs),
        deltas=tuple(deltas),
        queue_tick_delta=draw(ticks),
        machine_tick_delta=draw(ticks),
        checksum=draw(st.integers(min_value=0, max_value=2**32 - 1)),
    )


mutation_kinds = st.sampled_from(MutationType)
mutation_updates = st.builds(
    MutationUpdate,
    mutation_kinds,
    st.lists(indexes, max_size=4).map(tuple),
    set_clocks(),
)


@st.composite
def clock_exports(draw, message_class):
    state_names = draw(st.lists(names, max_size=6, unique=True))
    time = draw(st.lists(ticks, min_size=len(state_names), max_size=len(state_names)))
    schema = None
    if draw(st.booleans()):
        relation = st.lists(names, max_size=3).map(tuple)
        schema = {
            name: draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "auto": st.booleans(),
                        "multi": st.booleans(),
                        "require": relation,
                        "add": relation,
                        "remove": relation,
                        "after": relation,
                        "tags": relation,
                    },
                )
            )
            for name in state_names
        }
    return message_class(
        draw(names),
        tuple(state_names),
        tuple(time),
        draw(ticks),
        draw(ticks),
        draw(st.integers(min_value=len(state_names), max_value=MAX_STATES)),
        schema,
    )


messages = st.one_of(
    st.builds(
        Hello,
        names,
        st.booleans(),
        texts,
        st.none() | st.lists(names, max_size=4).map(tuple),
        st.none() | st.lists(names, max_size=4).map(tuple),
        st.booleans(),
        st.booleans(),
    ),
    clock_exports(HelloReply),
    clock_exports(SchemaChange),
    st.builds(
        Mutate,
        mutation_kinds,
        st.lists(indexes, max_size=6).map(tuple),
        st.none() | st.dictionaries(names, json_values, max_size=4),
        st.none() | st.builds(MutationEvent, names, names, texts, st.booleans()),
        st.booleans(),
    ),
    st.builds(MutateReply, ticks, st.none() | set_clocks()),
    st.builds(
        MutateReply,
        ticks,
        st.none(),
        st.lists(mutation_updates, max_size=3).map(tuple),
    ),
    st.builds(SyncReply, st.lists(ticks, max_size=8).map(tuple), ticks, ticks),
    set_clocks(),
    st.builds(SetClockMany, st.lists(mutation_updates, max_size=4).map(tuple)),
    st.builds(Payload, names, json_values, texts, texts, texts, texts),
    st.builds(Bye, texts),
    st.builds(ErrorMessage, names, texts),
    st.builds(ArgsNamesReply, st.lists(names, max_size=5).map(tuple)),
)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_round_trip_property(message):
    data = message.encode()
    decoded = decode(data)
    assert decoded == message
    assert decoded.encode() == data


def check_decode_outcome(data):
    try:
        result = decode(data)
    except WireError:
        return
    assert isinstance(result, Message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_wire_error(data):
    check_decode_outcome(data)


json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MessageType), st.lists(json_documents, max_size=9))
def test_random_fields_only_raise_wire_error(message_type, fields):
    data = json.dumps([1, int(message_type), *fields]).encode()
    check_decode_outcome(data)


@settings(max_examples=150, deadline=None)
@given(messages, st.data())
def test_mutated_messages_only_raise_wire_error(message, data):
    encoded = bytearray(message.encode())
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    check_decode_outcome(bytes(encoded))

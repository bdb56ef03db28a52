"""Wire codec: round trips, strict validation, checksums and encoded sizes."""

from __future__ import annotations

import datetime
import zlib

import pytest

from asyncmachine.rpc.wire import (
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    Ack,
    ArgsNames,
    ArgsNamesReply,
    Bye,
    ErrorMessage,
    Handshake,
    Hello,
    HelloReply,
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
    Sync,
    SyncReply,
    WireError,
    clock_checksum,
    decode,
    encode,
)

SCHEMA = {
    "Start": {"add": ["Ready"]},
    "Ready": {"require": ["Start"], "auto": True},
    "Msg": {"multi": True, "tags": ["chat"]},
}
CLOCK = SetClock(
    idxs=(0, 2), deltas=(1, 2), queue_tick_delta=3, machine_tick_delta=0, checksum=7
)

EXAMPLES = [
    Hello("rc-browser-bar-k3j"),
    Hello(
        "rc-x",
        sync_schema=False,
        schema_hash="a1b2c3",
        allowed_states=["Start", "Msg"],
        skipped_states=(),
        shallow_clocks=True,
        sync_mutations=True,
    ),
    HelloReply("server-foo", ["Start", "Ready", "Msg"], [1, 1, 4], 9, 0, 3, SCHEMA),
    HelloReply("server-foo", ("Msg",), (2,), 1, 2, 40),
    SchemaChange("server-foo", ("Start",), (1,), 3, 1, 1, {"Start": {}}),
    Handshake(),
    Ack(),
    Mutate(MutationType.ADD, (2,), {"msg": "hi", "n": [1, 2.5, None, {"x": True}]}),
    Mutate(
        MutationType.SET,
        (),
        None,
        MutationEvent("SubmitMsgState", "browser-bar-k3j", "tx-1", is_check=True),
        needs_reply=False,
    ),
    MutateReply(0, CLOCK),
    MutateReply(12, None, (MutationUpdate(MutationType.REMOVE, (1,), CLOCK),)),
    MutateReply(1),
    Sync(),
    SyncReply((0, 1, 2), 5, 1),
    SetClock(),
    CLOCK,
    SetClockMany(
        (
            MutationUpdate(MutationType.ADD, (0,), SetClock((0,), (1,), 1, 0, 5)),
            MutationUpdate(MutationType.SET, (), SetClock()),
        )
    ),
    Payload("hello", {"text": "hi", "at": [1, 2]}, "bar", "tok", "foo", "tx-9"),
    Bye(),
    Bye("shutting down"),
    ErrorMessage("no_access", "client id not allowed"),
    ArgsNames(),
    ArgsNamesReply(("Msg.msg", "Msg.author")),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    data = message.encode()
    assert isinstance(data, bytes)
    assert decode(data) == message
    assert type(message).decode(data) == message
    assert encode(message) == data


def test_every_message_type_has_an_example():
    assert {type(m).TYPE for m in EXAMPLES} == set(MessageType)


def test_encoding_is_compact_positional_json():
    assert Handshake().encode() == b"[1,3]"
    assert Bye("x").encode() == b'[1,13,"x"]'
    assert SetClock((3,), (1,), 1, 0, 42).encode() == b"[1,9,1,0,42,3,1]"


def test_single_state_set_clock_size():
    # Worst case: a 10-digit checksum.
    message = SetClock(idxs=(3,), deltas=(1,), queue_tick_delta=1, checksum=2**32 - 1)
    assert len(message.encode()) == 24


def test_non_ascii_names_stay_utf8():
    message = Payload("żółw", "日本")
    assert "żółw".encode() in message.encode()
    assert decode(message.encode()) == message


INVALID_BYTES = [
    (b"", "message"),
    (b"\xff\xfe", "message"),
    (b"[1,", "message"),
    (b'{"version":1}', "message"),
    (b"[1]", "message"),
    (b"[1,8,[NaN],0,0]", "message"),
    (b"[1,8,[Infinity],0,0]", "message"),
    (b'[1,5,1,[1],{"a":1,"a":2},null,true]', "message"),
    (b"[2,3]", "version"),
    (b"[true,3]", "version"),
    (b'["1",3]', "version"),
    (b"[1,99]", "type"),
    (b"[1,0]", "type"),
    (b"[1,true]", "type"),
    (b"[1,3.0]", "type"),
    (b"[1,3,null]", "handshake"),
    (b"[1,9,0,0,0,-1,1]", "set_clock.idxs[0]"),
    (b"[1,9,0,0,0,true,1]", "set_clock.idxs[0]"),
    (b"[1,9,0,0,0,65535,1]", "set_clock.idxs[0]"),
    (b"[1,9,0,0,0,1,1.5]", "set_clock.deltas[0]"),
    (b"[1,9,0,0,0,1,-2]", "set_clock.deltas[0]"),
    (b"[1,9,0,0,0,1]", "set_clock"),
    (b"[1,9,0,0]", "set_clock"),
    (b"[1,9,0,0,0,1,1,1,2]", "set_clock.idxs"),
    (b"[1,9,-1,0,0]", "set_clock.queue_tick_delta"),
    (b"[1,9,0,-1,0]", "set_clock.machine_tick_delta"),
    (b"[1,9,0,0,4294967296]", "set_clock.checksum"),
    (b"[1,9,0,0,-1]", "set_clock.checksum"),
    (b'[1,1,"",true,"",null,null,false,false]', "hello.machine_id"),
    (b'[1,1,"x",1,"",null,null,false,false]', "hello.sync_schema"),
    (b'[1,1,"x",true,"",["A",""],null,false,false]', "hello.allowed_states[1]"),
    (b'[1,1,"x",true,"",null,"A",false,false]', "hello.skipped_states"),
    (b'[1,1,"x"]', "hello"),
    (b'[1,2,"s",["A","B"],[1],1,0,2,null]', "hello_reply.time"),
    (b'[1,2,"s",["A","A"],[1,1],1,0,2,null]', "hello_reply.state_names"),
    (b'[1,2,"s",["A"],[1],1,0,0,null]', "hello_reply.states_count"),
    (b'[1,2,"s",["A"],[1],1,0,1,{"A":{"foo":1}}]', "hello_reply.schema['A'].foo"),
    (b'[1,2,"s",["A"],[1],1,0,1,{"A":{"auto":1}}]', "hello_reply.schema['A'].auto"),
    (b'[1,2,"s",["A"],[1],1,0,1,{"A":{"add":"B"}}]', "hello_reply.schema['A'].add"),
    (b'[1,2,"s",["A"],[1],1,0,1,{"B":{}}]', "hello_reply.state_names"),
    (b'[1,2,"s",["A"],[1],1,0,1,[]]', "hello_reply.schema"),
    (b'[1,12,"s",["A"],[-1],1,0,1,null]', "schema_change.time[0]"),
    (b"[1,5,7,[1],null,null,true]", "mutate.kind"),
    (b'[1,5,"add",[1],null,null,true]', "mutate.kind"),
    (b"[1,5,1,[1],[1],null,true]", "mutate.args"),
    (b'[1,5,1,[1],null,["a","b"],true]', "mutate.event"),
    (b'[1,5,1,[1],null,["","b","c",false],true]', "mutate.event.name"),
    (b"[1,5,1,[1],null,null,1]", "mutate.needs_reply"),
    (b"[1,6,0,[0,0,0],[[1,[],[0,0,0]]]]", "mutate_reply.mutations"),
    (b"[1,6,-1,null,null]", "mutate_reply.result"),
    (b"[1,6,0,[0,0],null]", "mutate_reply.clock"),
    (b"[1,10,[[4,[],[0,0,0]]]]", "set_clock_many.mutations[0].kind"),
    (b"[1,10,[[1,[-1],[0,0,0]]]]", "set_clock_many.mutations[0].called[0]"),
    (b"[1,10,[[1,[],[0,0,0,5]]]]", "set_clock_many.mutations[0].clock"),
    (b"[1,10,{}]", "set_clock_many.mutations"),
    (b'[1,11,"","","x","","",""]', "payload.name"),
    (b'[1,11,"n","",null,"",1,""]', "payload.source"),
    (b'[1,13,"\\ud800"]', "bye.reason"),
    (b'[1,14,"","x"]', "error.code"),
    (b'[1,16,["a",2]]', "args_names_reply.names[1]"),
]


@pytest.mark.parametrize(("data", "field"), INVALID_BYTES)
def test_decode_rejects_invalid_message(data, field):
    with pytest.raises(WireError) as caught:
        decode(data)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_decode_rejects_too_long_name():
    name = "x" * (MAX_NAME_LENGTH + 1)
    data = b'[1,1,"' + name.encode() + b'",true,"",null,null,false,false]'
    with pytest.raises(WireError, match="longer than 256") as caught:
        decode(data)
    assert caught.value.field == "hello.machine_id"


def test_decode_rejects_oversized_input():
    data = Payload("blob", "x" * 2000).encode()
    with pytest.raises(WireError, match="larger than the limit of 1000"):
        decode(data, max_size=1000)
    with pytest.raises(WireError, match="larger than the limit of 1000"):
        Payload("blob", "x" * 2000).encode(max_size=1000)


def test_decode_rejects_deep_nesting():
    data = b'[1,11,"n","",' + b"[" * 100_000 + b"]" * 100_000 + b',"","",""]'
    with pytest.raises(WireError) as caught:
        decode(data)
    assert caught.value.field in ("message", "payload.data")


def test_decode_rejects_non_bytes():
    with pytest.raises(WireError, match="expected bytes"):
        decode("[1,3]")


def test_decode_by_class_checks_type():
    with pytest.raises(WireError, match="expected a set_clock message") as caught:
        SetClock.decode(Handshake().encode())
    assert caught.value.field == "type"


INVALID_ARGS = [
    ({"when": datetime.date(2024, 1, 1)}, "mutate.args['when']", "date"),
    ({"a": [1, {"b": object()}]}, "mutate.args['a'][1]['b']", "object"),
    ({"ratio": float("nan")}, "mutate.args['ratio']", "NaN"),
    ({"ratio": float("inf")}, "mutate.args['ratio']", "NaN"),
    ({"keys": {1: 2}}, "mutate.args['keys']", "keys must be strings"),
    ({"tags": {"a", "b"}}, "mutate.args['tags']", "set"),
    ({"raw": b"bytes"}, "mutate.args['raw']", "bytes"),
    ({"": 1}, "mutate.args name", "empty"),
]


@pytest.mark.parametrize(("args", "field", "reason"), INVALID_ARGS)
def test_mutate_rejects_args_that_are_not_json(args, field, reason):
    with pytest.raises(WireError, match=reason) as caught:
        Mutate(MutationType.ADD, (0,), args)
    assert caught.value.field == field


def test_args_nesting_limit():
    value: list = []
    for _ in range(MAX_JSON_DEPTH + 1):
        value = [value]
    with pytest.raises(WireError, match="nested deeper"):
        Mutate(MutationType.ADD, (0,), {"deep": value})


def test_args_tuples_become_lists():
    message = Mutate(MutationType.ADD, (0,), {"pair": (1, (2, 3))})
    assert message.args == {"pair": [1, [2, 3]]}
    assert decode(message.encode()) == message


def test_payload_rejects_data_that_is_not_json():
    with pytest.raises(WireError, match="set") as caught:
        Payload("name", {"x": {1, 2}})
    assert caught.value.field == "payload.data['x']"


def test_constructors_validate_like_decode():
    with pytest.raises(WireError) as caught:
        SetClock(idxs=(1, 2), deltas=(1,))
    assert caught.value.field == "set_clock.deltas"
    with pytest.raises(WireError) as caught:
        SyncReply((1, -1), 0, 0)
    assert caught.value.field == "sync_reply.time[1]"
    with pytest.raises(WireError) as caught:
        MutateReply(0, CLOCK, ())
    assert caught.value.field == "mutate_reply.mutations"


def test_encode_rejects_non_message():
    with pytest.raises(WireError, match="expected a wire message"):
        encode({"type": "hello"})


def test_checksum_uses_canonical_text():
    expected = zlib.crc32(b"5;0;1,0,2")
    assert clock_checksum([1, 0, 2], 5) == expected
    assert clock_checksum((1, 0, 2), 5, 0) == expected
    assert clock_checksum([], 1) == zlib.crc32(b"1;0;")


def test_checksum_changes_with_each_part():
    base = clock_checksum([1, 0, 2], 5, 0)
    assert clock_checksum([1, 0, 3], 5, 0) != base
    assert clock_checksum([1, 0, 2], 6, 0) != base
    assert clock_checksum([1, 0, 2], 5, 1) != base
    # Positions matter: "10,2" and "1,02" must not collide by concatenation.
    assert clock_checksum([10, 2], 5) != clock_checksum([1, 2], 5)
    assert 0 <= base < 2**32


def test_clock_diff_between_and_apply():
    before, after = (1, 0, 2, 0), (1, 1, 4, 0)
    diff = SetClock.between(before, after, queue_ticks=(5, 7), machine_ticks=(0, 0))
    assert diff.idxs == (1, 2)
    assert diff.deltas == (1, 2)
    assert diff.queue_tick_delta == 2
    assert diff.checksum == clock_checksum(after, 7, 0)

    received = decode(diff.encode())
    time, queue_tick, machine_tick = received.apply_to(before, 5, 0)
    assert time == after
    assert (queue_tick, machine_tick) == (7, 0)
    assert clock_checksum(time, queue_tick, machine_tick) == received.checksum


def test_clock_diff_detects_stale_mirror():
    diff = SetClock.between((1, 0), (1, 1), queue_ticks=(2, 3))
    stale_time, queue_tick, machine_tick = diff.apply_to((3, 0), 2, 0)
    assert clock_checksum(stale_time, queue_tick, machine_tick) != diff.checksum


def test_clock_diff_rejects_ticks_going_down():
    with pytest.raises(ValueError, match="went down"):
        SetClock.between((2, 0), (1, 0), queue_ticks=(1, 1))
    with pytest.raises(ValueError, match="went down"):
        SetClock.between((1,), (1,), queue_ticks=(3, 2))
    with pytest.raises(ValueError, match="differ in length"):
        SetClock.between((1,), (1, 0), queue_ticks=(1, 1))


def test_clock_diff_apply_rejects_unknown_index():
    diff = SetClock(idxs=(5,), deltas=(1,))
    with pytest.raises(WireError, match="outside the mirror's 2 states") as caught:
        diff.apply_to((0, 0), 1)
    assert caught.value.field == "set_clock.idxs[0]"

"""Faults: dropped connections, resent mutations, hostile and truncated frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from typing import Any

from rpyc.core import brine, consts

import asyncmachine as am
from asyncmachine import rpc
from asyncmachine.rpc.wire import (
    Hello,
    Mutate,
    MutationType,
    SetClock,
)
from tests.rpc.helpers import LOCALHOST, TcpGate

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True),
}
TOTAL_FRAMES = 10_000
FAST_RETRY = rpc.RetryPolicy(attempts=50, backoff=0.001, max_backoff=0.02)


def applied_adds(mach: am.Machine, state: str) -> int:
    """Return how many adds a Multi state got: its tick is 1 and then +2 each."""
    tick = mach.tick(state)
    return (tick + 1) // 2


# -- dropped connections ---------------------------------------------------------------


def test_reply_lost_mutation_is_applied_once():
    async def scenario():
        gate: TcpGate | None = None

        class CutOnFirstMsg:
            def MsgState(self, e: am.Event) -> None:
                # The mutation is applied, then its reply is lost.
                if e.machine.tick("Msg") == 1:
                    gate.cut()

        source = am.Machine(SCHEMA, id="foo", handlers=CutOnFirstMsg())
        server = await rpc.serve_source(source, plain_service=None)
        gate = TcpGate(server.port)
        port = await gate.start()
        mirror = await rpc.connect_mirror(
            f"{LOCALHOST}:{port}", id="bar", retry=FAST_RETRY
        )
        try:
            result = await mirror.add("Msg")
            assert result == am.Result.EXECUTED
            assert applied_adds(source, "Msg") == 1
            assert server.source.duplicates == 1
            assert mirror.clock() == source.clock()
            assert mirror.client.tick("ErrNetwork") >= 1
            assert mirror.client.is_active("Ready")
        finally:
            await mirror.close()
            await server.close()
            await gate.close()

    asyncio.run(scenario())


def test_mirror_survives_100_drops_exactly_once():
    async def scenario():
        rng = random.Random(20261204)
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, push_interval=0, plain_service=None)
        gate = TcpGate(server.port)
        port = await gate.start()
        mirror = await rpc.connect_mirror(
            f"{LOCALHOST}:{port}", id="bar", retry=FAST_RETRY, call_timeout=10
        )
        acknowledged = 0
        try:
            for _ in range(100):
                futures = [mirror.add("Msg") for _ in range(rng.randint(1, 4))]
                source.add("Start") if rng.random() < 0.5 else source.remove("Start")
                # Cut before, during or after the requests cross, so that some
                # are lost, some applied without a reply, some acknowledged.
                for _ in range(rng.randint(0, 6)):
                    await asyncio.sleep(0)
                gate.cut()
                results = await asyncio.gather(*futures)
                assert all(result == am.Result.EXECUTED for result in results)
                acknowledged += len(results)
            assert await mirror.add("Msg") == am.Result.EXECUTED
            acknowledged += 1
            assert applied_adds(source, "Msg") == acknowledged
            assert mirror.clock() == source.clock()
            assert mirror.queue_tick() == source.queue_tick()
            assert mirror.client.tick("ErrNetwork") >= 100
        finally:
            await mirror.close()
            await server.close()
            await gate.close()

    asyncio.run(scenario())


def test_mirror_gives_up_after_retries():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        gate = TcpGate(server.port)
        port = await gate.start()
        mirror = await rpc.connect_mirror(
            f"{LOCALHOST}:{port}",
            id="bar",
            retry=rpc.RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001),
        )
        await gate.close()
        future = mirror.add("Msg")
        try:
            await mirror.client.when("ConnRetryFailed")
            assert not mirror.client.is_active("Start")
            assert await _raises(future, ConnectionError)
        finally:
            await mirror.close()
            await server.close()

    asyncio.run(scenario())


async def _raises(future: Any, error: type[BaseException]) -> bool:
    try:
        await future
    except error:
        return True
    return False


def test_call_timeout_resends_then_fails():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        gate = TcpGate(server.port)
        port = await gate.start()
        mirror = await rpc.connect_mirror(
            f"{LOCALHOST}:{port}",
            id="bar",
            call_timeout=0.05,
            retry=rpc.RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001),
        )
        try:
            gate.hold()
            future = mirror.add("Msg")
            assert await _raises(future, rpc.CallTimeoutError)
            assert mirror.client.tick("ErrNetworkTimeout") >= 1
            assert mirror.client.tick("CallRetryFailed") == 1
            gate.release()
            # The held requests arrive now; the source applies the mutation once.
            assert await mirror.add("Start") == am.Result.EXECUTED
            assert applied_adds(source, "Msg") == 1
            assert mirror.clock() == source.clock()
        finally:
            await mirror.close()
            await server.close()
            await gate.close()

    asyncio.run(scenario())


# -- hostile and truncated frames ------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return struct.pack("!LB", len(payload), 0) + payload + b"\n"


def request(seq: int, handler: int, boxed_args: Any) -> bytes:
    # rpyc 6.0: one byte of message type, then the brine of (seq, args).
    body = brine.dump((seq, (handler, boxed_args)))
    return frame(bytes([consts.MSG_REQUEST]) + body)


def box(value: Any) -> Any:
    if isinstance(value, tuple):
        return (consts.LABEL_TUPLE, tuple(box(item) for item in value))
    return (consts.LABEL_VALUE, value)


def call(seq: int, root: Any, name: str, args: tuple[Any, ...]) -> bytes:
    boxed = (consts.LABEL_TUPLE, (root, box(name), box(args), box(())))
    return request(seq, consts.HANDLE_CALLATTR, boxed)


def random_wire_bytes(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randint(0, 40))
    if choice == 1:
        return b"\xa1" + rng.randbytes(rng.randint(0, 12))
    if choice == 2:
        valid = Mutate(MutationType.ADD, (rng.randint(0, 65534),), None).encode()
        return valid[: rng.randint(0, len(valid))]
    if choice == 3:
        # A client id of up to 300 characters: valid up to 256.
        client_id = "x" * rng.randint(1, 300)
        return b'[1,1,"' + client_id.encode() + b'",true,"",null,null,false,false]'
    if choice == 4:
        return SetClock((1,), (1,), 0, 0, 5).encode_binary()
    return b'[1,5,1,[0],{"a":' * rng.randint(1, 40)


def hostile_requests(rng: random.Random, root: Any, count: int) -> list[bytes]:
    """rpyc requests that are valid frames but ask for what must be refused."""
    frames = []
    names = ["secret", "_plain", "__class__", "__dict__", "peer", "conn", "exposed_x"]
    for seq in range(10, 10 + count):
        kind = rng.randrange(5)
        if kind == 0:
            boxed = (consts.LABEL_TUPLE, (root, box(rng.choice(names))))
            frames.append(request(seq, consts.HANDLE_GETATTR, boxed))
        elif kind == 1:
            frames.append(call(seq, root, rng.choice(names), ()))
        elif kind == 2:
            frames.append(call(seq, root, "mirror", (str(seq), rng.randbytes(8))))
        elif kind == 3:
            frames.append(call(seq, root, "auth", ("wrong",)))
        else:
            frames.append(request(seq, rng.randint(0, 40), box((1, 2))))
    return frames


def last_frame(rng: random.Random, root: Any) -> bytes:
    """An invalid, truncated or random frame to end a hostile connection with."""
    kind = rng.randrange(4)
    if kind == 0:
        return call(
            5, root, "source", (f"k{rng.randint(0, 9)}", random_wire_bytes(rng))
        )
    if kind == 1:
        return rng.randbytes(rng.randint(1, 64))
    if kind == 2:
        return frame(rng.randbytes(rng.randint(1, 64)))
    # Truncated: the connection then ends in the middle of a frame.
    whole = call(5, root, "source", ("k", Hello("x").encode()))
    return whole[: rng.randint(1, len(whole) - 1)]


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    length, _flag = struct.unpack("!LB", header)
    payload = await reader.readexactly(length + 1)
    return payload[:-1]


async def send_hostile_connection(
    port: int, rng: random.Random, frames_left: int
) -> int:
    """Open a raw connection, send hostile frames, end it; return frames sent."""
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    sent = 0
    try:
        writer.write(request(1, consts.HANDLE_GETROOT, box(())))
        reply = await read_frame(reader)
        assert reply[0] == consts.MSG_REPLY
        _seq, (_label, id_pack) = brine.load(reply[1:])
        root = (consts.LABEL_LOCAL_REF, id_pack)
        frames = hostile_requests(rng, root, min(frames_left - 1, rng.randint(0, 12)))
        frames.append(last_frame(rng, root))
        writer.write(b"".join(frames))
        sent = len(frames)
        # After our end of the stream the source closes too, also in the
        # middle of a truncated frame; its replies are read until then.
        writer.write_eof()
        await reader.read()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return sent


def test_source_survives_10000_hostile_frames(caplog):
    caplog.set_level(logging.CRITICAL, logger="asyncmachine")

    async def scenario():
        rng = random.Random(7)
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        mirror = await rpc.connect_mirror(server.addr, id="good")
        try:
            sent = 0
            while sent < TOTAL_FRAMES:
                sent += await send_hostile_connection(
                    server.port, rng, TOTAL_FRAMES - sent
                )
                if sent % 1000 < 13:
                    assert await mirror.add("Msg") == am.Result.EXECUTED
            assert sent == TOTAL_FRAMES
            assert await mirror.add("Msg") == am.Result.EXECUTED
            assert mirror.clock() == source.clock()
            late = await rpc.connect_mirror(server.addr, id="late")
            assert late.clock() == source.clock()
            await late.close()
            while len(server.peers) > 1:
                await asyncio.sleep(0.01)
            assert len(server.sessions) == 1
        finally:
            await mirror.close()
            await server.close()

    asyncio.run(scenario())

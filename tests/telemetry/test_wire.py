"""The telemetry wire format and exporter edge cases, with real collectors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytest

import asyncmachine as am
from asyncmachine import dbg, history, telemetry
from asyncmachine.telemetry import _wire
from asyncmachine.telemetry._tracer import TelemetryTracer

REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "A": am.State(add=["B"]),
    "B": am.State(),
    "C": am.State(remove=["A"]),
    "M": am.State(multi=True),
}


class _Outbox:
    """The part of an exporter a tracer uses; keeps every captured message."""

    def __init__(self) -> None:
        self.outbox: deque[Any] = deque()
        self.capacity = 1_000_000
        self.pack_at = -1
        self._wake_pending = True

    def register(self, tracer: TelemetryTracer) -> None:
        self.outbox.append(tracer.schema_message)

    def unregister(self, mach_id: str) -> None:
        pass

    def signal(self) -> None:
        pass


def _captured(mutations: int = 5) -> tuple[list[Any], history.MemoryHistory]:
    """Return the messages a tracer captured for a few mutations, and the truth."""
    exporter = _Outbox()
    mach = am.Machine(SCHEMA, id="captured")
    local = history.track(mach, max_records=None)
    mach.add_tracer(TelemetryTracer(exporter))  # type: ignore[arg-type]
    for n in range(mutations):
        mach.add("M", {"n": n})
    mach.add("C")
    mach.add("A")  # canceled
    return list(exporter.outbox), local


def _differing_fields(left: history.TxRecord, right: history.TxRecord) -> list[str]:
    return [
        name
        for name in history.TxRecord.__slots__
        if name != "time" and getattr(left, name) != getattr(right, name)
    ]


def test_block_round_trip_chains_clocks() -> None:
    messages, local = _captured()
    payload, data, transitions = _wire.encode_batch(messages)
    block = json.loads(payload)[1]
    assert block["kind"] == "txs"
    assert block["n"] == transitions == 7
    assert block["machs"] == [["captured", 5, 7]]
    assert "targets" in block  # the canceled transition lists its targets
    assert "source" not in block
    decoded = _wire.WireDecoder().decode(payload, data)
    records = decoded[1:]
    assert len(records) == len(local.records())
    for got, want in zip(records, local.records(), strict=True):
        assert _differing_fields(got, want) == []
    # Chained transitions send no clock_before: 7 clock_after and 1 clock_before.
    widths = block["widths"]
    row_bytes = sum(_wire._WIDTH_BYTES[w] for w in widths[:-2]) * 7
    clock_bytes = len(data) - row_bytes
    assert clock_bytes == 8 * 5 * _wire._WIDTH_BYTES[widths[-1]]


def test_block_never_chains_across_machines() -> None:
    exporter = _Outbox()
    first = am.Machine(SCHEMA, id="first")
    second = am.Machine(SCHEMA, id="second")
    tracked = {m.id: history.track(m, max_records=None) for m in (first, second)}
    for mach in (first, second):
        mach.add_tracer(TelemetryTracer(exporter))  # type: ignore[arg-type]
    first.add("M")
    second.add("M")
    first.add("M")
    # Two machines never share a tick dict today; this one does, so that
    # identity alone would chain second's record to first's.
    second._ticks = first._ticks
    second.add("C")

    payload, data, transitions = _wire.encode_batch(list(exporter.outbox))
    records = _wire.WireDecoder().decode(payload, data)[2:]

    assert transitions == 4
    assert [r.mach for r in records] == ["first", "second", "first", "second"]
    for mach_id, local in tracked.items():
        got = [r for r in records if r.mach == mach_id]
        for record, want in zip(got, local.records(), strict=True):
            assert _differing_fields(record, want) == []


def test_wide_ticks_fall_back_to_8_bytes() -> None:
    mach = am.Machine(SCHEMA, id="wide")
    local = history.track(mach, max_records=None)
    exporter = _Outbox()
    mach.add_tracer(TelemetryTracer(exporter))  # type: ignore[arg-type]
    mach.sync_clock({"B": 2**40 + 1})
    mach.add("M")
    payload, data, _ = _wire.encode_batch(list(exporter.outbox))
    # clock_after holds the wide tick; the one clock_before sent is all zeros.
    assert json.loads(payload)[1]["widths"][-2:] == "QI"
    records = _wire.WireDecoder().decode(payload, data)[1:]
    assert records[0].clock_after[1] == 2**40 + 1
    for got, want in zip(records, local.records(), strict=True):
        assert _differing_fields(got, want) == []


def _corrupt(payload: bytes, data: bytes, case: str) -> tuple[bytes, bytes]:
    messages = json.loads(payload)
    block = messages[1]
    if case == "data cut short":
        return payload, data[:-3]
    if case == "extra data":
        return payload, data + b"\0" * 8
    if case == "bad widths":
        block["widths"] = "QQ"
    elif case == "runs over n":
        block["machs"][0][2] += 1
    elif case == "unknown machine":
        block["machs"][0][0] = "nobody"
    elif case == "clock longer than schema":
        block["machs"][0][1] = 9
    elif case == "called too short":
        block["called"] = block["called"][:-1]
    elif case == "first transition chained":
        chained_at = sum(_wire._WIDTH_BYTES[w] for w in block["widths"][:8]) * 7
        data = data[:chained_at] + b"\1" + data[chained_at + 1 :]
    return json.dumps(messages).encode(), data


@pytest.mark.parametrize(
    "case",
    [
        "data cut short",
        "extra data",
        "bad widths",
        "runs over n",
        "unknown machine",
        "clock longer than schema",
        "called too short",
        "first transition chained",
    ],
)
def test_decoder_rejects_invalid_blocks(case: str) -> None:
    messages, _ = _captured()
    payload, data = _corrupt(*_wire.encode_batch(messages)[:2], case)
    with pytest.raises(_wire.WireError) as caught:
        _wire.WireDecoder().decode(payload, data)
    decoded = caught.value.decoded  # type: ignore[attr-defined]
    kinds = [type(m).__name__ for m in decoded]
    if case == "extra data":
        # The block itself is valid; the bytes after it are not.
        assert kinds == ["MachineSchema"] + ["TxRecord"] * 7
    else:
        # Nothing of an invalid block is kept.
        assert kinds == ["MachineSchema"]


def test_reordered_states_resend_schema() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="reordered")
            telemetry.attach(mach, collector.address)
            mach.add("A")
            record = mach.export()
            order = list(reversed(record["state_names"]))
            ticks = dict(zip(record["state_names"], record["time"], strict=True))
            mach.import_(
                {**record, "state_names": order, "time": [ticks[n] for n in order]}
            )
            mach.add("M")
            assert await telemetry.flush()
            data = collector.machine("reordered")
            assert list(data.schema.states) == order
            last = data.history.records()[-1]
            after = dict(zip(data.schema.states, last.clock_after, strict=True))
            assert after == mach.clock()
            await telemetry.close()

    asyncio.run(scenario())


def test_big_machine_blocks_split_below_frame_limit() -> None:
    states = {f"S{i}": am.State() for i in range(3000)}

    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0, max_records=None) as collector:
            mach = am.Machine(states, id="big")
            local = history.track(mach, max_records=None)
            telemetry.attach(mach, collector.address)
            for i in range(400):
                # Every clock differs from the previous one, so no chaining.
                mach.add(f"S{i}")
                if i % 50 == 0:
                    await asyncio.sleep(0)
            assert await telemetry.flush(timeout=30)
            received = collector.records("big")
            assert len(received) == 400
            assert received[-1].clock_after == local.records()[-1].clock_after
            assert telemetry.stats()[0]["dropped"] == 0
            await telemetry.close()

    asyncio.run(scenario())


def test_background_thread_from_sync_code(tmp_path: Path) -> None:
    dump = tmp_path / "sync.jsonl.gz"
    env = {k: v for k, v in os.environ.items() if k != telemetry.ENV_ADDR}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncmachine.dbg",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--dump",
            str(dump),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[-1]
        # No asyncio loop runs here: the exporter uses its background thread.
        mach = am.Machine(SCHEMA, id="sync-code")
        local = history.track(mach, max_records=None)
        telemetry.attach(mach, address)
        for _ in range(300):
            mach.add("M")
        mach.add("C")
        assert telemetry.flush_sync(timeout=20)
        mach.dispose()
        assert telemetry.flush_sync(timeout=20)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    received = history.read_dump(dump).machine("sync-code").records
    assert len(received) == 301
    for got, want in zip(received, local.records(), strict=True):
        assert _differing_fields(got, want) == []

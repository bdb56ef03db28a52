"""Telemetry against a real collector on 127.0.0.1, with machines in other processes."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine import dbg, history, telemetry
from asyncmachine.telemetry._exporter import ExporterOptions

REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "A": am.State(add=["B"]),
    "B": am.State(),
    "C": am.State(remove=["A"]),
    "M": am.State(multi=True),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same_except_time(left: history.TxRecord, right: history.TxRecord) -> list[str]:
    """Return the names of the fields (other than time) that differ."""
    return [
        name
        for name in history.TxRecord.__slots__
        if name != "time" and getattr(left, name) != getattr(right, name)
    ]


async def _run_process(address: str, prefix: str, mutations: int, dump: Path) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.telemetry.machines_proc",
        address,
        prefix,
        str(mutations),
        str(dump),
        cwd=REPO_ROOT,
    )
    return await asyncio.wait_for(process.wait(), 60)


def test_machines_in_processes_match_local_history(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            dumps = [tmp_path / f"p{n}.jsonl.gz" for n in range(3)]
            codes = await asyncio.gather(
                *[
                    _run_process(collector.address, f"p{n}", 150, dump)
                    for n, dump in enumerate(dumps)
                ]
            )
            assert codes == [0, 0, 0]
            for dump in dumps:
                local = history.read_dump(dump)
                for machine in local.machines:
                    received = collector.machine(machine.schema.id)
                    assert received.schema.states == machine.schema.states
                    assert received.schema.parent == machine.schema.parent
                    assert received.schema.schema == machine.schema.schema
                    assert received.dropped == 0
                    records = received.history.records()
                    assert len(records) == len(machine.records)
                    for got, expected in zip(records, machine.records, strict=True):
                        assert _same_except_time(got, expected) == []
            assert len(collector.machines) == 9

    asyncio.run(scenario())


def test_arg_values_never_sent() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="args")
            telemetry.attach(mach, collector.address)
            mach.add("A", {"password": "hunter2", "n": 1})
            assert await telemetry.flush()
            record = collector.records("args")[-1]
            assert record.args == ("password", "n")
            assert "hunter2" not in repr(record.to_json())
            await telemetry.close()

    asyncio.run(scenario())


def test_encoded_batch_holds_no_arg_values() -> None:
    async def scenario() -> None:
        exporter_options = ExporterOptions(flush_interval=0)
        mach = am.Machine(SCHEMA, id="encoded")
        # No collector listens: records stay in the outbox.
        tracer = telemetry.attach(
            mach, f"127.0.0.1:{_free_port()}", options=exporter_options
        )
        mach.add("A", {"token": "s3cret-value"})
        payload, ints, transitions = telemetry._wire.encode_batch(
            list(tracer.exporter.outbox)
        )
        assert transitions == 1
        assert b"token" in payload
        assert b"s3cret-value" not in payload
        await telemetry.close(timeout=0.1)

    asyncio.run(scenario())


def test_wire_round_trip_matches_local_records() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="wire", log_level=am.LogLevel.OPS)
            local = history.track(mach, max_records=None, checks=True)
            telemetry.attach(mach, collector.address, checks=True)

            class Source:
                def AState(self, e: am.Event) -> None:
                    e.machine.add("M", event=e)

            mach.bind_handlers(Source())
            mach.add("A")
            mach.add("C")  # removes A
            mach.remove("C")
            mach.add("M")
            mach.add("C")
            mach.add("A")  # canceled: C removes A
            mach.can_add("A")
            mach.add_err(RuntimeError("x"))
            mach.sync_clock({"B": 5, "M": 9})
            assert await telemetry.flush()
            received = collector.records("wire")
            expected = local.records()
            assert len(received) == len(expected)
            for got, want in zip(received, expected, strict=True):
                assert _same_except_time(got, want) == []
            assert any(r.check for r in received)
            assert any(r.sync for r in received)
            assert any(r.source is not None for r in received)
            assert any(r.result == 1 for r in received)
            await telemetry.close()

    asyncio.run(scenario())


def test_schema_change_resent() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="grow")
            telemetry.attach(mach, collector.address)
            mach.add("A")
            bigger = {**SCHEMA, "D": am.State()}
            mach.set_schema(bigger, [*mach.state_names(), "D"])
            mach.add("D")
            assert await telemetry.flush()
            data = collector.machine("grow")
            assert data.schema.states[-1] == "D"
            records = data.history.records()
            assert records[-1].called == ("D",)
            assert len(records[-1].clock_after) == len(data.schema.states)
            assert data.history.activations("D")
            await telemetry.close()

    asyncio.run(scenario())


def test_absent_debugger_never_blocks() -> None:
    async def scenario() -> None:
        mach = am.Machine(SCHEMA, id="alone")
        options = ExporterOptions(outbox_size=100, backoff=0.05)
        tracer = telemetry.attach(mach, f"127.0.0.1:{_free_port()}", options=options)
        for i in range(5000):
            mach.add("M")
            if i % 500 == 0:
                await asyncio.sleep(0)
        assert mach.tick("M") == 5000 * 2 - 1
        assert tracer.dropped >= 5000 - 100
        assert telemetry.stats()[0]["dropped"] == tracer.dropped
        assert not telemetry.stats()[0]["connected"]
        await telemetry.close(timeout=0.1)

    asyncio.run(scenario())


def test_reconnects_and_reports_drops() -> None:
    async def scenario() -> None:
        port = _free_port()
        options = ExporterOptions(outbox_size=50, backoff=0.05, max_backoff=0.2)
        first = dbg.Collector("127.0.0.1", port)
        await first.start()
        mach = am.Machine(SCHEMA, id="again")
        tracer = telemetry.attach(mach, first.address, options=options)
        mach.add("A")
        assert await telemetry.flush()
        assert len(first.records("again")) == 1
        await first.stop()

        # Records made while no collector listens: 50 fit, the rest drop.
        for _ in range(80):
            mach.add("M")
        second = dbg.Collector("127.0.0.1", port)
        await second.start()
        try:
            assert await telemetry.flush(timeout=20)
            mach.add("C")
            assert await telemetry.flush()
            data = second.machine("again")
            records = data.history.records()
            assert tracer.dropped == 30
            assert data.dropped == 30
            assert records[-1].called == ("C",)
            # The outbox kept the first 50 adds of M and dropped the last 30,
            # so the record of C carries its own clock_before across the gap.
            assert records[0].clock_before == (1, 1, 0, 0, 0)
            assert records[-2].clock_after == (1, 1, 0, 2 * 50 - 1, 0)
            assert records[-1].clock_before == (1, 1, 0, 2 * 80 - 1, 0)
        finally:
            await telemetry.close()
            await second.stop()

    asyncio.run(scenario())


def test_dispose_reported() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="short")
            telemetry.attach(mach, collector.address)
            mach.add("A")
            mach.dispose()
            await collector.wait_for(lambda c: c.machines.get("short") is not None)
            await collector.wait_for(lambda c: c.machine("short").disposed)
            assert collector.machine("short").disposed
            await telemetry.close()

    asyncio.run(scenario())


def test_attach_once_per_address() -> None:
    async def scenario() -> None:
        mach = am.Machine(SCHEMA, id="once")
        address = f"127.0.0.1:{_free_port()}"
        first = telemetry.attach(mach, address)
        second = telemetry.attach(mach, address)
        assert first is second
        telemetry.detach(mach)
        assert not any(isinstance(t, telemetry.TelemetryTracer) for t in mach.tracers())
        await telemetry.close(timeout=0.1)

    asyncio.run(scenario())


def test_attach_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        mach = am.Machine(SCHEMA, id="env-off")
        monkeypatch.delenv(telemetry.ENV_ADDR, raising=False)
        assert telemetry.attach_from_env(mach) is None

        monkeypatch.setenv(telemetry.ENV_ADDR, "udp://127.0.0.1:1")
        assert telemetry.attach_from_env(mach) is None

        async with dbg.Collector("127.0.0.1", 0) as collector:
            monkeypatch.setenv(telemetry.ENV_ADDR, collector.address)
            envmach = am.Machine(SCHEMA, id="env-on")
            tracer = telemetry.attach_from_env(envmach)
            assert tracer is not None
            envmach.add("A")
            assert await telemetry.flush()
            assert len(collector.records("env-on")) == 1
            await telemetry.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6831", ("127.0.0.1", 6831, "tcp", "")),
        ("tcp://127.0.0.1:7000", ("127.0.0.1", 7000, "tcp", "")),
        (":7001", ("127.0.0.1", 7001, "tcp", "")),
        ("1", ("127.0.0.1", 6831, "tcp", "")),
        ("[::1]:7002", ("::1", 7002, "tcp", "")),
        ("ws://127.0.0.1:6832/dbg.ws", ("127.0.0.1", 6832, "ws", "/dbg.ws")),
        ("ws://[::1]:6832", ("::1", 6832, "ws", "/")),
        ("wss://relay.example/dbg?t=1", ("relay.example", 443, "wss", "/dbg?t=1")),
        ("WS://Host:80/x", ("host", 80, "ws", "/x")),
    ],
)
def test_parse_address_valid(text: str, expected: tuple[str, int, str, str]) -> None:
    assert tuple(telemetry.parse_address(text)) == expected


def test_ws_address_text_hides_query() -> None:
    address = telemetry.parse_address("ws://127.0.0.1:6832/dbg.ws?token=secret")
    assert address.url == "ws://127.0.0.1:6832/dbg.ws?token=secret"
    assert str(address) == "ws://127.0.0.1:6832/dbg.ws"


@pytest.mark.parametrize(
    "text",
    [
        "localhost",
        "h:x",
        "h:70000",
        "udp://h:1",
        "ws://:1/p",
        "ws://h:99999/p",
        "ws://user:pw@h:1/p",
        "ws://h:1/p#frag",
    ],
)
def test_parse_address_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid debugger address"):
        telemetry.parse_address(text)

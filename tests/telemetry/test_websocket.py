"""Telemetry over WebSocket, against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import rpyc
from aiohttp import web

import asyncmachine as am
from asyncmachine import dbg, history, rpc, telemetry
from asyncmachine.telemetry import _exporter
from asyncmachine.telemetry._wire import WIRE_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "A": am.State(add=["B"]),
    "B": am.State(),
    "C": am.State(remove=["A"]),
    "M": am.State(multi=True),
}


def _differing_fields(left: history.TxRecord, right: history.TxRecord) -> list[str]:
    """Return the names of the fields (other than time) that differ."""
    return [
        name
        for name in history.TxRecord.__slots__
        if name != "time" and getattr(left, name) != getattr(right, name)
    ]


def _mutate(mach: am.Machine) -> None:
    mach.add("A")
    mach.add("C")
    mach.add("M", {"n": 1})
    mach.add("A")  # canceled: C removes A
    mach.remove("C")
    mach.add("M")


async def _start_app(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def test_ws_round_trip_matches_local_history() -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            url = await collector.serve_ws("127.0.0.1", 0, path="/dbg.ws")
            assert url.startswith("ws://127.0.0.1:")
            assert url.endswith("/dbg.ws")
            mach = am.Machine(SCHEMA, id="ws-round-trip")
            local = history.track(mach, max_records=None)
            tracer = telemetry.attach(mach, url)
            assert tracer.address.is_websocket
            _mutate(mach)
            assert await telemetry.flush()
            received = collector.records("ws-round-trip")
            expected = local.records()
            assert len(received) == len(expected) == 6
            for got, want in zip(received, expected, strict=True):
                assert _differing_fields(got, want) == []
            assert collector.machine("ws-round-trip").connected
            await telemetry.close()

    asyncio.run(scenario())


async def _other_route(request: web.Request) -> web.Response:
    return web.Response(text="other routes")


def test_ws_handler_mounted_on_an_app() -> None:
    async def scenario() -> None:
        collector = dbg.Collector("127.0.0.1", 0)
        app = web.Application()
        app.router.add_get("/telemetry", collector.ws_handler)
        app.router.add_get("/", _other_route)
        runner, port = await _start_app(app)
        try:
            mach = am.Machine(SCHEMA, id="mounted")
            telemetry.attach(mach, f"ws://127.0.0.1:{port}/telemetry")
            mach.add("A")
            assert await telemetry.flush()
            assert [r.called for r in collector.records("mounted")] == [("A",)]
            assert collector.machine("mounted").connected
            await telemetry.close()
            await collector.stop()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_ws_rejects_foreign_origin() -> None:
    async def scenario() -> None:
        allowed = "http://127.0.0.1:8000"
        collector = dbg.Collector("127.0.0.1", 0, allowed_origins={allowed})
        url = await collector.serve_ws("127.0.0.1", 0)
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await rpc.connect_ws(url, origin="http://evil.example")
            assert caught.value.status == 403
            conn = await rpc.connect_ws(url, origin=allowed)
            assert await conn.call("hello", WIRE_VERSION, b"{}") == WIRE_VERSION
            await conn.aclose()
        finally:
            await collector.stop()

    asyncio.run(scenario())


def test_env_addr_with_ws_url(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            url = await collector.serve_ws("127.0.0.1", 0)
            monkeypatch.setenv(telemetry.ENV_ADDR, url)
            # A new machine attaches itself through attach_from_env.
            mach = am.Machine(SCHEMA, id="env-ws")
            tracers = [
                t for t in mach.tracers() if isinstance(t, telemetry.TelemetryTracer)
            ]
            assert [str(t.address) for t in tracers] == [url]
            mach.add("A")
            assert await telemetry.flush()
            assert len(collector.records("env-ws")) == 1
            await telemetry.close()

    asyncio.run(scenario())


def test_pyodide_uses_browser_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    """In Pyodide the exporter connects with rpc.connect_pyodide_ws.

    The browser transport needs a browser, so a stand-in records the call and
    opens the same connection with aiohttp; the server is real.
    """
    calls: list[str] = []
    aiohttp_connect = rpc.connect_ws

    async def browser_connect(url: str, service: Any = None, **kwargs: Any) -> Any:
        calls.append(url)
        return await aiohttp_connect(url, service, **kwargs)

    def refuse_aiohttp(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rpc.connect_ws must not be used in Pyodide")

    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            url = await collector.serve_ws("127.0.0.1", 0)
            monkeypatch.setattr(
                _exporter, "sys", types.SimpleNamespace(platform="emscripten", argv=[])
            )
            monkeypatch.setattr(rpc, "connect_pyodide_ws", browser_connect)
            monkeypatch.setattr(rpc, "connect_ws", refuse_aiohttp, raising=False)
            mach = am.Machine(SCHEMA, id="pyodide")
            telemetry.attach(mach, f"{url}?token=secret")
            mach.add("A")
            assert await telemetry.flush()
            assert calls == [f"{url}?token=secret"]
            assert len(collector.records("pyodide")) == 1
            await telemetry.close()

    asyncio.run(scenario())


def test_telemetry_imports_without_aiohttp() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "import asyncmachine as am\n"
        "from asyncmachine import telemetry\n"
        "from asyncmachine.telemetry import _exporter\n"
        "assert 'aiohttp' not in [m for m in sys.modules if sys.modules[m]]\n"
        "mach = am.Machine({'A': am.State()}, id='no-aiohttp')\n"
        "try:\n"
        "    telemetry.attach(mach, 'ws://127.0.0.1:1/dbg.ws')\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != telemetry.ENV_ADDR}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "needs aiohttp" in result.stdout


def test_headless_dbg_listens_on_ws(tmp_path: Path) -> None:
    dump = tmp_path / "ws.jsonl.gz"

    async def scenario() -> None:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asyncmachine.dbg",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--listen-ws",
            "ws://127.0.0.1:0/dbg.ws",
            "--dump",
            str(dump),
            "--log-level",
            "WARNING",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert server.stdout is not None
        tcp_line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
        ws_line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
        assert tcp_line.startswith("am-dbg listening on 127.0.0.1:")
        assert ws_line.startswith("am-dbg listening on ws://127.0.0.1:")
        url = ws_line.split()[-1]
        mach = am.Machine(SCHEMA, id="cli-ws")
        telemetry.attach(mach, url)
        _mutate(mach)
        assert await telemetry.flush()
        await telemetry.close()
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 20) == 0

    asyncio.run(scenario())
    machine = history.read_dump(dump).machine("cli-ws")
    assert len(machine.records) == 6


def test_cli_rejects_tls_listen_url(capsys: pytest.CaptureFixture[str]) -> None:
    from asyncmachine.dbg._cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--listen-ws", "wss://127.0.0.1:6832/dbg.ws"])
    assert "serves no TLS" in capsys.readouterr().err


def test_machine_in_pyodide_reports_over_ws() -> None:
    """Pyodide runs under Node.js, whose WebSocket replaces a browser's."""
    node = shutil.which("node")
    pyodide_dir = REPO_ROOT / "tests" / "pyodide" / "node_modules" / "pyodide"
    if node is None or not (pyodide_dir / "pyodide.mjs").is_file():
        pytest.skip("node or the npm package pyodide is missing: run make install")
    probe = subprocess.run(
        [node, "-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"],
        check=False,
    )
    # Node.js 20 has a global WebSocket only behind this flag; 22 has it always.
    command = [node] if probe.returncode == 0 else [node, "--experimental-websocket"]

    async def scenario() -> tuple[int, str, str, list[history.TxRecord]]:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            url = await collector.serve_ws("127.0.0.1", 0)
            process = await asyncio.create_subprocess_exec(
                *command,
                str(REPO_ROOT / "tests" / "pyodide" / "run_module.mjs"),
                str(pyodide_dir),
                str(REPO_ROOT / "kernel"),
                str(Path(rpyc.__file__).parent),
                str(Path(__file__).with_name("pyodide_machine.py")),
                url,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
            records = collector.records("in-pyodide") if process.returncode == 0 else []
            return process.returncode or 0, stdout.decode(), stderr.decode(), records

    returncode, stdout, stderr, records = asyncio.run(scenario())
    assert returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    results = json.loads(stdout.splitlines()[-1])
    assert results["platform"] == "emscripten"
    assert results["aiohttp_imported"] is False
    assert results["flushed"] is True
    assert results["sent"] == 22
    assert results["dropped"] == 0
    assert len(records) == 22
    clock = dict(zip(("Start", "Ready", "Msg"), records[-1].clock_after, strict=False))
    assert clock == {k: results["clock"][k] for k in clock}

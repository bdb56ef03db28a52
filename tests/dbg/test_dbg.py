"""am-dbg: the collector API, the headless command and the terminal UI."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from prompt_toolkit.application import Application
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import asyncmachine as am
from asyncmachine import dbg, history, telemetry
from asyncmachine.dbg._view import DebuggerView
from asyncmachine.dbg.tui import build_app

REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Busy": am.State(remove=["Idle"]),
    "Idle": am.State(remove=["Busy"]),
}


async def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the loop run until `predicate()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _machine_process(
    address: str, prefix: str, mutations: int, dump: Path
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.telemetry.machines_proc",
        address,
        prefix,
        str(mutations),
        str(dump),
    ]


def test_headless_dumps_periodically_and_on_sigterm(tmp_path: Path) -> None:
    dump = tmp_path / "session.jsonl.gz"

    async def scenario() -> None:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "asyncmachine.dbg",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--dump",
            str(dump),
            "--dump-every",
            "0.2",
            "--log-level",
            "WARNING",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
        assert line.startswith("am-dbg listening on 127.0.0.1:")
        address = line.split()[-1]
        local = [tmp_path / f"local{n}.jsonl.gz" for n in range(2)]
        clients = [
            await asyncio.create_subprocess_exec(
                *_machine_process(address, f"c{n}", 80, path), cwd=REPO_ROOT
            )
            for n, path in enumerate(local)
        ]
        for client in clients:
            assert await asyncio.wait_for(client.wait(), 60) == 0
        expected = sum(
            len(m.records) for path in local for m in history.read_dump(path).machines
        )

        def periodic_dump_complete() -> bool:
            if not dump.exists():
                return False
            got = history.read_dump(dump)
            return sum(len(m.records) for m in got.machines) == expected

        await _wait(periodic_dump_complete, timeout=30)
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 20) == 0

    asyncio.run(scenario())
    final = history.read_dump(dump)
    assert len(final.machines) == 6
    assert {m.schema.parent for m in final.machines} == {None, "c0-parent", "c1-parent"}


def test_cli_help_and_version() -> None:
    import subprocess

    for args in (["--help"], ["--version"]):
        done = subprocess.run(
            [sys.executable, "-m", "asyncmachine.dbg", *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert done.returncode == 0
        assert done.stdout.strip()


def test_collector_dump_and_import(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            mach = am.Machine(SCHEMA, id="saved")
            telemetry.attach(mach, collector.address)
            mach.add("Start")
            mach.add("Busy")
            assert await telemetry.flush()
            path = collector.dump(tmp_path / "saved.jsonl.gz")
            await telemetry.close()

        other = dbg.Collector("127.0.0.1", 0)
        other.load(path)
        assert [r.called for r in other.records("saved")] == [
            ("Start",),
            ("Busy",),
        ]
        assert not other.machine("saved").connected

    asyncio.run(scenario())


# The terminal UI, driven through a pipe input.


def _imported_collector(tmp_path: Path) -> dbg.Collector:
    """A collector holding two machines with known transitions."""
    foo = am.Machine(SCHEMA, id="foo", log_level=am.LogLevel.OPS)
    bar = am.Machine(SCHEMA, id="bar", parent_id="foo")
    stores = [history.track(foo), history.track(bar)]
    foo.add("Start")  # foo 1
    bar.add("Busy")  # bar 1
    bar.add("Ready")  # bar 2, canceled: Ready requires Start
    foo.add("Busy")  # foo 2
    bar.remove("Busy")  # bar 3
    foo.add("Ready")  # foo 3
    path = tmp_path / "ui.jsonl.gz"
    history.write_dump(path, stores)
    collector = dbg.Collector("127.0.0.1", 0)
    collector.load(path)
    return collector


async def _drive(
    view: DebuggerView, steps: list[tuple[str, Callable[[], bool]]]
) -> Application[None]:
    with create_pipe_input() as pipe:
        app = build_app(view, input=pipe, output=DummyOutput())
        task = asyncio.ensure_future(app.run_async())
        await _wait(lambda: app.is_running)
        for keys, check in steps:
            pipe.send_text(keys)
            await _wait(check)
        pipe.send_text("q")
        await asyncio.wait_for(task, 10)
    return app


def test_tui_navigation(tmp_path: Path) -> None:
    collector = _imported_collector(tmp_path)
    view = DebuggerView(collector, dump_path=str(tmp_path / "out.jsonl.gz"))

    def called() -> tuple[str, ...]:
        record = view.current()
        return record.called if record is not None else ()

    steps = [
        # foo is selected first, in tail mode: its last transition.
        ("", lambda: view.mach_id == "foo" and called() == ("Ready",)),
        ("h", lambda: called() == ("Busy",)),
        ("h", lambda: called() == ("Start",)),
        ("h", lambda: called() == ("Start",)),
        ("l", lambda: called() == ("Busy",)),
        ("j", lambda: view.mach_id == "bar"),
        ("k", lambda: view.mach_id == "foo"),
        # Through all machines in time order, from foo's Busy.
        ("[", lambda: view.mach_id == "bar" and called() == ("Ready",)),
        ("]", lambda: view.mach_id == "foo" and called() == ("Busy",)),
        ("]", lambda: view.mach_id == "bar" and called() == ("Busy",)),
        ("t", lambda: view.tail),
        ("?", lambda: view.show_help),
        ("?", lambda: not view.show_help),
    ]
    app = asyncio.run(_drive(view, steps))
    assert not app.is_running


def test_tui_search_filter_and_state_jump(tmp_path: Path) -> None:
    collector = _imported_collector(tmp_path)
    view = DebuggerView(collector)

    def called() -> tuple[str, ...]:
        record = view.current()
        return record.called if record is not None else ()

    steps = [
        ("j", lambda: view.mach_id == "bar"),
        ("\x1b[H", lambda: called() == ("Busy",)),  # home
        ("/ready\r", lambda: view.search == "ready" and view.current().result == 1),
        ("c", lambda: view.hide_canceled and view.current().result == 0),
        ("c", lambda: not view.hide_canceled),
        ("k", lambda: view.mach_id == "foo"),
        ("s", lambda: view.state == "Start"),
        ("ss", lambda: view.state == "Busy"),
        ("\x1b[H", lambda: called() == ("Start",)),
        (">", lambda: called() == ("Busy",)),
        ("l", lambda: called() == ("Ready",)),
        ("<", lambda: called() == ("Busy",)),
        ("<", lambda: "no more transitions touching Busy" in view.message),
    ]
    asyncio.run(_drive(view, steps))


def test_tui_export_and_import(tmp_path: Path) -> None:
    collector = _imported_collector(tmp_path)
    view = DebuggerView(collector)
    target = tmp_path / "exported.jsonl.gz"
    steps = [
        ("x", lambda: view.prompt == "export"),
        ("\x15" + str(target) + "\r", lambda: view.prompt is None and target.exists()),
    ]
    asyncio.run(_drive(view, steps))
    exported = history.read_dump(target)
    assert [m.schema.id for m in exported.machines] == ["foo", "bar"]

    fresh = DebuggerView(dbg.Collector("127.0.0.1", 0))
    steps = [
        ("i", lambda: fresh.prompt == "import"),
        ("\x15" + str(target) + "\r", lambda: len(fresh.collector.machines) == 2),
    ]
    asyncio.run(_drive(fresh, steps))
    assert "imported 2 machines" in fresh.message


def test_tui_panes_render(tmp_path: Path) -> None:
    view = DebuggerView(_imported_collector(tmp_path))
    view.first()
    machines = "".join(text for _style, text in view.render_machines())
    states = "".join(text for _style, text in view.render_states())
    details = "".join(text for _style, text in view.render_details())
    lines, selected = view.transition_lines()
    assert ">- foo (3)" in machines
    assert "- bar (3)" in machines
    assert "+co Start 1" in states
    assert "+ o Ready 1" in states
    assert "[add] Start -> executed" in details
    assert "[add] Start" in details  # a log line
    assert "[add] Start" in lines[selected][1]
    view.show_help = True
    assert "export a dump file" in "".join(t for _s, t in view.render_details())


def test_tui_follows_live_telemetry(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            view = DebuggerView(collector)
            collector.add_listener(view.listener())
            with create_pipe_input() as pipe:
                app = build_app(view, input=pipe, output=DummyOutput())
                task = asyncio.ensure_future(app.run_async())
                await _wait(lambda: app.is_running)
                mach = am.Machine(SCHEMA, id="live")
                telemetry.attach(mach, collector.address)
                mach.add("Start")
                assert await telemetry.flush()
                await _wait(lambda: view.current() is not None)
                mach.add("Busy")
                assert await telemetry.flush()
                await _wait(lambda: view.current().called == ("Busy",))
                pipe.send_text("q")
                await asyncio.wait_for(task, 10)
            await telemetry.close()

    asyncio.run(scenario())


def test_env_var_reaches_headless_dbg(tmp_path: Path) -> None:
    """AM_DBG_ADDR in a machine's process is enough to be seen by am-dbg."""
    script = (
        "import asyncmachine as am\n"
        "from asyncmachine import telemetry\n"
        "m = am.Machine({'A': am.State()}, id='from-env')\n"
        "telemetry.attach_from_env(m)\n"
        "m.add('A')\n"
    )

    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            env = {**os.environ, "AM_DBG_ADDR": collector.address}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, env=env, cwd=REPO_ROOT
            )
            assert await asyncio.wait_for(process.wait(), 30) == 0
            await collector.wait_for(lambda c: "from-env" in c.machines)
            await collector.wait_for(lambda c: len(c.records("from-env")) == 1)

    asyncio.run(scenario())

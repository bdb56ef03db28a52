"""The interactive shell, driven through prompt_toolkit pipe input and a real PTY."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pexpect
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import asyncmachine as am
from amrepl import ReplCompleter, open_history, run_shell
from amrepl._cli import parse_args, run_interactive
from asyncmachine.rpc.repl import expose_repl
from tests.repl.helpers import (
    PYTHON,
    REPO_ROOT,
    MachineProcess,
    exposed,
    new_machine,
    shell_runner,
    sink_output,
    subprocess_env,
)


def completions(completer, text):
    document = Document(text, len(text))
    return [c.text for c in completer.get_completions(document, CompleteEvent())]


async def async_completions(completer, text):
    document = Document(text, len(text))
    found = []
    async for completion in completer.get_completions_async(document, CompleteEvent()):
        found.append(completion.text)
    return found


def test_completion_of_commands_ids_states_and_options():
    foo = new_machine("server-foo")
    foo.add("Start")
    bar = new_machine("browser-bar")

    async def scenario():
        async with exposed([foo, bar]) as endpoints:
            async with shell_runner(endpoints) as (runner, _):
                completer = ReplCompleter(runner.pool)
                cases = {
                    text: completions(completer, text)
                    for text in (
                        "",
                        "gr",
                        "WHEN",
                        "add ",
                        "add s",
                        "add server-foo ",
                        "remove server-foo ",
                        "remove server-foo R",
                        "add server-foo m",
                        "list --id-",
                        "list --active ",
                        "list -P ",
                        "group-add ",
                        "when-time server-foo -s ",
                        "when-time server-foo -t ",
                        "help gr",
                        "nonsense ",
                    )
                }
                # The async path refreshes the clock first.
                foo.add("Bored")
                cases["async remove"] = await async_completions(
                    completer, "remove server-foo "
                )
                return cases

    cases = asyncio.run(scenario())
    assert cases[""][:3] == ["list", "add", "remove"]
    assert cases["gr"] == ["group-add", "group-remove"]
    assert cases["WHEN"] == ["when", "when-not", "when-time"]
    assert cases["add "] == [".", "browser-bar", "server-foo"]
    assert cases["add s"] == ["server-foo"]
    # add offers inactive or Multi states, remove the active ones.
    assert cases["add server-foo "] == [
        "Msg",
        "Bored",
        "Blocked",
        "Hold",
        "Exception",
    ]
    assert cases["remove server-foo "] == ["Start", "Ready"]
    assert cases["remove server-foo R"] == ["Ready"]
    assert cases["add server-foo m"] == ["Msg"]
    assert cases["list --id-"] == [
        "--id-contains",
        "--id-partial",
        "--id-prefix",
        "--id-regexp",
        "--id-suffix",
    ]
    assert "Bored" in cases["list --active "]
    assert cases["list -P "] == ["browser-bar", "server-foo"]
    assert "Start" in cases["group-add "]
    assert "Start" in cases["when-time server-foo -s "]
    assert cases["when-time server-foo -t "] == []
    assert cases["help gr"] == ["group-add", "group-remove"]
    assert cases["nonsense "] == []
    assert cases["async remove"] == ["Start", "Ready", "Bored"]


async def start_shell(runner, pipe, **kwargs):
    return asyncio.get_running_loop().create_task(
        run_shell(runner, input=pipe, output=DummyOutput(), **kwargs)
    )


def test_shell_runs_list_filters():
    machines = [new_machine("server-foo"), new_machine("browser-bar")]
    machines[0].add("Start")

    async def scenario():
        async with exposed(machines) as endpoints:
            async with shell_runner(endpoints, background_waits=True) as (
                runner,
                sink,
            ):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe)
                    start = await sink.until("to leave\n")
                    pipe.send_text("list -a Ready\n")
                    end = await sink.until("CR: (Start:1 Ready:1)\n", after=start)
                    ready = sink.getvalue()[start:end]
                    pipe.send_text("list --id-prefix browser --no-states\n")
                    await sink.until("1. browser-bar t0\n", after=end)
                    pipe.send_text("exit\n")
                    status = await shell
                return status, ready

    status, ready = asyncio.run(scenario())
    assert status == 0
    assert ready == "1. server-foo t2\n   CR: (Start:1 Ready:1)\n"


def test_when_resolves_while_typing():
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints, background_waits=True) as (
                runner,
                sink,
            ):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe)
                    pipe.send_text("when m1 Start Ready\n")
                    end = await sink.until("=> waiting: when m1 Start Ready")
                    # A half-typed command is at the prompt when the wait resolves.
                    pipe.send_text("mach m")
                    mach.add("Start")
                    end = await sink.until("=> when m1 Start Ready: [1 1]\n", after=end)
                    pipe.send_text("1\n")
                    await sink.until("=> (Start:1 Ready:1)\n", after=end)
                    pipe.send_text("exit\n")
                    await shell
                return sink.getvalue()

    text = asyncio.run(scenario())
    assert text.index("when m1 Start Ready: [1 1]") < text.index("(Start:1 Ready:1)")


def test_background_wait_timeout_printed():
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints, background_waits=True) as (
                runner,
                sink,
            ):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe)
                    pipe.send_text("when-not m1 Exception --timeout 5\n")
                    await sink.until("=> when-not m1 Exception: [0]\n")
                    pipe.send_text("when m1 Bored --timeout 0.1\n")
                    await sink.until("err> when m1 Bored timed out after 0.1 s\n")
                    pipe.send_text("exit\n")
                    return await shell

    assert asyncio.run(scenario()) == 0


def test_directory_changes_printed(tmp_path):
    first = new_machine("server-foo")
    second = new_machine("late-bar")

    async def scenario():
        output, sink = sink_output()
        args, _ = parse_args(["-d", str(tmp_path), "--poll-interval", "0.05"])
        args.no_history = True
        async with exposed([first], repl_dir=tmp_path):
            with create_pipe_input() as pipe:
                shell = asyncio.get_running_loop().create_task(
                    run_interactive(
                        args,
                        None,
                        output=output,
                        prompt_input=pipe,
                        prompt_output=DummyOutput(),
                    )
                )
                end = await sink.until("=> connected server-foo at 127.0.0.1:")
                endpoint = await expose_repl(second, repl_dir=tmp_path)
                end = await sink.until("=> connected late-bar at 127.0.0.1:", after=end)
                pipe.send_text("list --no-states\n")
                end = await sink.until("2. server-foo t0\n", after=end)
                await endpoint.close()
                end = await sink.until("late-bar at 127.0.0.1:", after=end)
                await sink.until("(address file removed)", after=end)
                pipe.send_text("status\n")
                await sink.until("Total: 1\n", after=end)
                pipe.send_text("exit\n")
                status = await shell
        return status, sink.getvalue()

    status, text = asyncio.run(scenario())
    assert status == 0
    assert "1. late-bar t0\n2. server-foo t0\n" in text
    assert "removed late-bar at 127.0.0.1:" in text


def test_history_skips_consecutive_duplicates(tmp_path):
    mach = new_machine("m1")
    path = tmp_path / "state" / "history"

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints) as (runner, sink):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe, history=open_history(path))
                    for line in ("status", "status", "time m1", "status"):
                        pipe.send_text(line + "\n")
                    pipe.send_text("exit\n")
                    await shell

    asyncio.run(scenario())
    stored = [line[1:] for line in path.read_text().splitlines() if line[:1] == "+"]
    assert stored == ["status", "time m1", "status", "exit"]
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_vi_mode_edits_line():
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints) as (runner, sink):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe, vi_mode=True)
                    # Type "tme m1", leave insert mode, go to the line start,
                    # move right once and insert the missing "i".
                    pipe.send_text("tme m1")
                    pipe.send_text("\x1b")
                    pipe.send_text("0")
                    pipe.send_text("a")
                    pipe.send_text("i\n")
                    await sink.until("=> [0 0 0 0 0 0 0]\n")
                    pipe.send_text("exit\n")
                    return await shell

    assert asyncio.run(scenario()) == 0


def test_ctrl_c_clears_line_and_ctrl_d_exits():
    mach = new_machine("m1")

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints) as (runner, sink):
                with create_pipe_input() as pipe:
                    shell = await start_shell(runner, pipe)
                    pipe.send_text("add m1 Bored")
                    pipe.send_text("\x03")
                    pipe.send_text("add m1 Msg\n")
                    await sink.until("=> executed\n")
                    pipe.send_text("\x04")
                    return await shell

    assert asyncio.run(scenario()) == 0
    assert mach.is_active("Msg")
    assert not mach.is_active("Bored")


@pytest.fixture
def machine_process(tmp_path):
    directory = tmp_path / "addr"
    directory.mkdir()
    process = MachineProcess(directory, ["server-foo"])
    yield process
    assert process.stop() == 0


def spawn_shell(directory, state_home, **env):
    return pexpect.spawn(
        PYTHON,
        ["-m", "amrepl", "-d", str(directory)],
        cwd=str(REPO_ROOT),
        env=subprocess_env(
            XDG_STATE_HOME=str(state_home),
            PROMPT_TOOLKIT_NO_CPR="1",
            TERM="xterm",
            **env,
        ),
        encoding="utf-8",
        timeout=30,
        dimensions=(24, 200),
    )


def test_pty_shell_with_history_and_colour(machine_process, tmp_path):
    shell = spawn_shell(machine_process.directory, tmp_path / "state")
    try:
        shell.expect_exact("am-repl>")
        shell.sendline("add server-foo Start")
        shell.expect_exact("\x1b[90m=> \x1b[0mexecuted")
        shell.sendline("list --no-states")
        shell.expect_exact("1. server-foo t2")
        shell.sendline("exit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 0
    history = (tmp_path / "state" / "am-repl" / "history").read_text()
    assert "+add server-foo Start\n" in history
    assert "+list --no-states\n" in history


def test_pty_no_color_variable(machine_process, tmp_path):
    shell = spawn_shell(machine_process.directory, tmp_path / "state", NO_COLOR="1")
    try:
        shell.expect_exact("am-repl>")
        shell.sendline("add server-foo Bogus")
        shell.expect_exact("err> unknown states Bogus")
        before = shell.before
        shell.sendline("exit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert "\x1b[31m" not in before


def test_pty_sigterm_stops_shell(machine_process, tmp_path):
    shell = spawn_shell(machine_process.directory, tmp_path / "state")
    try:
        shell.expect_exact("am-repl>")
        shell.expect_exact("connected server-foo")
        shell.kill(signal.SIGTERM)
        shell.expect(pexpect.EOF)
    finally:
        with contextlib.suppress(Exception):
            shell.close()
    assert shell.exitstatus == 143


def test_pty_ctrl_c_cancels_running_command(machine_process, tmp_path):
    # A script's waits block, so Ctrl-C reaches a running command.
    script = tmp_path / "wait.txt"
    script.write_text("when server-foo Bored --timeout 60\n")
    shell = spawn_shell(machine_process.directory, tmp_path / "state")
    try:
        shell.expect_exact("am-repl>")
        shell.sendline(f"script {script}")
        machine_process.wait_for_waiters("server-foo", 1)
        shell.sendintr()
        shell.expect_exact("interrupted")
        shell.sendline("status")
        shell.expect_exact("Connected: 1")
        shell.sendline("exit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 0
    machine_process.wait_for_waiters("server-foo", 0)


def test_completion_ignores_machine_without_time():
    # Before its clock is fetched, a machine offers every state for add.
    mach = am.Machine({"A": am.State()}, id="solo")

    async def scenario():
        async with exposed([mach]) as endpoints:
            async with shell_runner(endpoints) as (runner, _):
                [link] = runner.pool.links
                link.time = None
                completer = ReplCompleter(runner.pool)
                return completions(completer, "add solo ")

    assert asyncio.run(scenario()) == ["A", "Exception"]

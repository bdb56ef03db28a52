"""am-repl run as a subprocess against machines served by another process."""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from amrepl._commands import LIST_FLAGS_LEGEND
from tests.repl.helpers import PYTHON, REPO_ROOT, MachineProcess, subprocess_env


@pytest.fixture
def machines(tmp_path):
    process = MachineProcess(tmp_path, ["server-foo", "server-bar"])
    yield process
    assert process.stop() == 0


def run_repl(*args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [PYTHON, "-m", "amrepl", *args],
        cwd=REPO_ROOT,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_command(directory: Path, *command: str):
    return run_repl("-d", str(directory), "--", *command)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_add_executed_exits_0(machines):
    completed = run_command(machines.directory, "add", "server-foo", "Start")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "=> executed\n"
    assert machines.command("add server-foo Start") == "0"


def test_add_with_args_exits_0(machines):
    completed = run_command(
        machines.directory, "add", "server-foo", "Msg", "--arg", "msg=hi"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "=> executed\n"


def test_add_queued_prints_queue_tick(machines):
    assert machines.command("hold server-foo") == "held"
    try:
        completed = run_command(machines.directory, "add", "server-foo", "Msg")
    finally:
        machines.command("release server-foo")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("=> queued (queue tick ")
    tick = int(completed.stdout.split("queue tick ")[1].rstrip(")\n"))
    assert tick >= 2


def test_add_canceled_exits_1(machines):
    completed = run_command(machines.directory, "add", "server-foo", "Blocked")
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout == "=> canceled\n"


def test_unknown_machine_exits_2(machines):
    completed = run_command(machines.directory, "add", "server-baz", "Start")
    assert completed.returncode == 2
    assert "unknown machine 'server-baz'" in completed.stderr
    assert "server-bar, server-foo" in completed.stderr
    assert completed.stdout == ""


def test_unknown_state_exits_2(machines):
    completed = run_command(machines.directory, "add", "server-foo", "Nope")
    assert completed.returncode == 2
    assert "unknown states Nope for machine server-foo" in completed.stderr


def test_usage_error_exits_2(machines):
    completed = run_command(machines.directory, "add", "server-foo")
    assert completed.returncode == 2
    assert "the following arguments are required: STATE" in completed.stderr
    completed = run_command(machines.directory, "add", "server-foo", "A", "--arg", "x")
    assert completed.returncode == 2
    assert "expected NAME=VALUE" in completed.stderr
    completed = run_command(machines.directory, "frobnicate")
    assert completed.returncode == 2
    assert "unknown command 'frobnicate'" in completed.stderr


def test_wait_timeout_exits_2(machines):
    completed = run_command(
        machines.directory, "when", "server-foo", "Bored", "--timeout", "0.2"
    )
    assert completed.returncode == 2
    assert "when server-foo Bored timed out after 0.2 s" in completed.stderr
    # The endpoint cancels the wait when the client goes away.
    machines.wait_for_waiters("server-foo", 0)


def test_when_resolves_and_prints_ticks(machines):
    machines.command("add server-foo Start")
    completed = run_command(machines.directory, "when", "server-foo", "Start", "Ready")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "=> [1 1]\n"


def test_refused_connection_exits_2(machines, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "gone.addr").write_text(f"127.0.0.1:{free_port()}\n")
    completed = run_command(lone, "list")
    assert completed.returncode == 2
    assert "connection refused" in completed.stderr
    completed = run_repl(f"127.0.0.1:{free_port()}", "--", "list")
    assert completed.returncode == 2
    assert "connection refused" in completed.stderr


def test_partial_connection_runs_command(machines):
    stale = machines.directory / "stale.addr"
    stale.write_text(f"127.0.0.1:{free_port()}\n")
    completed = run_command(machines.directory, "list", "--no-states")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "1. server-bar t0\n2. server-foo t0\n"
    assert "1 of 3 endpoints not connected" in completed.stderr

    completed = run_command(machines.directory, "add", "stale", "Start")
    assert completed.returncode == 2
    assert "machine 'stale' at 127.0.0.1:" in completed.stderr
    assert "connection refused" in completed.stderr

    completed = run_repl("-d", str(machines.directory), "--req-all", "--", "list")
    assert completed.returncode == 2
    assert "cannot connect to 127.0.0.1:" in completed.stderr
    assert "check that the server is running" in completed.stderr


def test_list_and_group_commands(machines):
    machines.command("add server-foo Start")
    completed = run_command(machines.directory, "group-add", "Bored", "-a", "Ready")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "=> Executed: 1\n=> Queued: 0\n=> Canceled: 0\n"

    completed = run_command(machines.directory, "list")
    assert completed.stdout == (
        "1. server-bar t0\n   C: ()\n"
        "2. server-foo t3\n   CR: (Start:1 Ready:1 Bored:1)\n"
    )
    completed = run_command(machines.directory, "group-remove", "Bored")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("=> Executed: 2\n")
    completed = run_command(machines.directory, "list", "-a", "Bored")
    assert completed.stdout == "=> no machines\n"


def test_address_file_listing_from_file(machines, tmp_path):
    listing = tmp_path / "addresses.txt"
    addresses = [
        (machines.directory / name).read_text().strip()
        for name in ("server-foo.addr", "server-bar.addr")
    ]
    listing.write_text("# two machines\n" + "\n".join(addresses) + "\n")
    completed = run_repl("-f", str(listing), "--", "list", "--no-states")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "1. server-bar t0\n2. server-foo t0\n"
    completed = run_repl(*addresses, "--", "mach", "server-foo", "--all")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("=> () [Start:0 Ready:0")


def test_sigterm_stops_waiting_command(machines):
    process = subprocess.Popen(
        [PYTHON, "-m", "amrepl", "-d", str(machines.directory), "--"]
        + ["when", "server-foo", "Bored", "--timeout", "120"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The wait is registered once the command runs, after the signal
        # handlers were installed.
        machines.wait_for_waiters("server-foo", 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
    finally:
        process.kill()
        process.communicate()
    machines.wait_for_waiters("server-foo", 0)


def test_help_and_version():
    completed = run_repl("--help")
    assert completed.returncode == 0
    assert "usage: am-repl" in completed.stdout
    assert "-- COMMAND ARGS" in completed.stdout
    assert LIST_FLAGS_LEGEND in completed.stdout
    completed = run_repl("--version")
    assert completed.returncode == 0
    assert completed.stdout.startswith("am-repl ")


def test_missing_source_exits_2(tmp_path):
    completed = run_repl()
    assert completed.returncode == 2
    assert "give endpoint addresses, -f FILE or -d DIR" in completed.stderr
    missing = tmp_path / "missing"
    expected = (
        f"err> address directory {missing} does not exist. Servers create it when "
        "they write their address files (*.addr), so start the server first or "
        "check the path (am-demo prints its directory at start).\n"
    )
    completed = run_repl("-d", str(missing), "--", "list")
    assert completed.returncode == 2
    assert completed.stderr == expected
    # The shell checks the directory before it starts.
    completed = run_repl("-d", str(missing))
    assert completed.returncode == 2
    assert completed.stderr == expected
    completed = run_repl("-d", str(tmp_path), "--", "list")
    assert completed.returncode == 2
    assert "no endpoint addresses found" in completed.stderr
    assert "start a server that writes its address there" in completed.stderr
    completed = run_repl("not-an-address", "--", "list")
    assert completed.returncode == 2
    assert "invalid address 'not-an-address'" in completed.stderr


def test_command_without_separator_exits_2(machines):
    directory = str(machines.directory)
    completed = run_repl("-d", directory, "list")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.endswith(
        "am-repl: error: 'list' is a command, not an address, so put it after "
        f"'--', as in: {shlex.join(['am-repl', '-d', directory, '--', 'list'])}\n"
    )
    completed = run_repl("-d", directory, "--", "list", "--no-states")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "1. server-bar t0\n2. server-foo t0\n"


def test_no_color_when_not_terminal(machines):
    completed = run_command(machines.directory, "add", "server-foo", "Nope")
    assert "\x1b[" not in completed.stderr
    completed = run_command(machines.directory, "list")
    assert "\x1b[" not in completed.stdout

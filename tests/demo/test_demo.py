"""Tests of the in-process foo/bar demo (``am-demo --local``), with short intervals."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine.demo import BAR_SCHEMA, FOO_SCHEMA, DemoConfig, run_demo
from asyncmachine.demo.run import DEFAULT_MESSAGES, new_page_id
from asyncmachine.demo.transcript import describe_changes

# Short intervals keep the test quick. The order of events does not depend on
# them: foo gets bored only after bored_after seconds without a message.
FAST = [
    "--local",
    "--hello-every",
    "0.05",
    "--hello-limit",
    "8",
    "--bored-after",
    "0.3",
    "--user-delay",
    "0.02",
]


def run_command(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    paths = [str(repo_root / "kernel"), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return subprocess.run(
        [sys.executable, "-m", "asyncmachine.demo", *args],
        cwd=repo_root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_writes_transcript(repo_root: Path, tmp_path: Path) -> None:
    transcript_path = tmp_path / "transcript.txt"
    completed = run_command(repo_root, *FAST, "--transcript", str(transcript_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr

    transcript = transcript_path.read_text()
    page_ids = re.findall(r"browser-bar-[a-z0-9]{6}", transcript)
    assert page_ids, transcript
    page_id = page_ids[0]
    for text in DEFAULT_MESSAGES:
        assert f"[{page_id}] {text}" in transcript
    assert "[server-foo] hello" in transcript
    assert "foo is bored" in transcript
    assert "+Bored" in transcript


def test_command_prints_output_and_transcript(repo_root: Path) -> None:
    completed = run_command(repo_root, *FAST)
    assert completed.returncode == 0, completed.stdout + completed.stderr

    output = completed.stdout
    assert "[server-foo] hello\n" in output
    assert "foo is bored\n" in output
    assert "transcript:\n" in output
    assert "server-foo: (" in output


def test_command_rejects_bad_interval(repo_root: Path) -> None:
    completed = run_command(repo_root, "--local", "--hello-every", "0")
    assert completed.returncode == 2
    assert "--hello-every" in completed.stderr


def test_run_demo_reaches_bored() -> None:
    config = DemoConfig(hello_every=0.05, bored_after=0.3, user_delay=0.02)
    output = io.StringIO()
    result = asyncio.run(run_demo(config, output))

    assert result.error is None
    assert result.hellos >= 1
    printed = output.getvalue().splitlines()
    for text in DEFAULT_MESSAGES:
        assert f"[{result.page_id}] {text}" in printed
    assert "[server-foo] hello" in printed
    assert printed[-1] == "foo is bored"

    server_active = result.final_states["server-foo"].split(")")[0]
    assert re.search(r"\bBored:\d+", server_active), server_active
    page_states = result.final_states[result.page_id]
    msg_tick = int(re.search(r"Msg:(\d+)", page_states).group(1))
    assert msg_tick >= config.hello_limit


def test_run_demo_hello_limit_zero_sends_none() -> None:
    config = DemoConfig(
        hello_every=0.02, hello_limit=0, bored_after=0.2, user_delay=0.01
    )
    result = asyncio.run(run_demo(config, io.StringIO()))
    assert result.error is None
    assert result.hellos == 0


def test_run_demo_times_out() -> None:
    config = DemoConfig(hello_every=0.05, bored_after=30, user_delay=0, timeout=0.3)
    result = asyncio.run(run_demo(config, io.StringIO()))
    assert result.error is not None
    assert "did not finish" in result.error


def test_page_id_format() -> None:
    page_id = new_page_id()
    assert re.fullmatch(r"browser-bar-[a-z0-9]{6}", page_id)


def test_schemas_share_states() -> None:
    shared = {"Start", "Ready", "Heartbeat", "Healthcheck", "Msg", "ErrNetwork"}
    assert shared <= set(FOO_SCHEMA)
    assert shared <= set(BAR_SCHEMA)
    assert "Bored" in FOO_SCHEMA
    assert "Bored" not in BAR_SCHEMA
    assert "SubmitMsg" in BAR_SCHEMA
    assert FOO_SCHEMA["Msg"].multi
    assert "Bored" in FOO_SCHEMA["Msg"].remove
    assert "Msg" in FOO_SCHEMA["Bored"].remove


def test_foo_bored_removes_msg() -> None:
    foo = am.Machine(FOO_SCHEMA, id="server-foo")
    foo.add("Start")
    foo.add("Msg", args={"msg": "hi"})
    assert foo.add("Bored").executed
    assert foo.is_active("Bored")
    assert foo.is_inactive("Msg")


def test_foo_msg_removes_bored() -> None:
    foo = am.Machine(FOO_SCHEMA, id="server-foo")
    foo.add(["Start", "Bored"])
    assert foo.is_active("Bored")
    foo.add("Msg", args={"msg": "hi"})
    assert foo.is_active("Msg")
    assert foo.is_inactive("Bored")


def test_bar_empty_submit_canceled() -> None:
    from asyncmachine.demo.bar import BarHandlers
    from asyncmachine.demo.transcript import Transcript

    server = am.Machine(FOO_SCHEMA, id="server-foo")
    page = am.Machine(BAR_SCHEMA, id="browser-bar-test01")
    page.bind_handlers(BarHandlers(page, server, Transcript(io.StringIO())))
    page.add("Start")
    server.add("Start")

    assert page.add("SubmitMsg", args={"msg": "  "}).canceled
    assert server.tick("Msg") == 0


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ([0, 0], [1, 0], "+A"),
        ([1, 1], [3, 2], "+A -B"),
        ([1, 0], [1, 0], ""),
    ],
)
def test_describe_changes(before: list[int], after: list[int], expected: str) -> None:
    assert describe_changes(("A", "B"), before, after) == expected

"""``am-demo --headless`` end to end: relay, offline page in Chromium, am-repl.

Runs the command as a subprocess, as a user would, and checks its transcript,
its debugger dump (with ``am-vis inspect-dump``) and its exit status.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asyncmachine.demo.headless import DEFAULT_MESSAGES, REPL_MESSAGE
from tests.lite.conftest import BUILD_TIMEOUT_SECONDS

# A cold page load took about 15 s on a 2-core machine, and the scenario about
# 10 s more. The site may also be built first.
RUN_TIMEOUT_SECONDS = 300


def run_python(repo_root: Path, args: list[str], timeout: float):
    environment = dict(os.environ)
    paths = [str(repo_root / "kernel"), str(repo_root / "repl")]
    paths.append(environment.get("PYTHONPATH", ""))
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return subprocess.run(
        [sys.executable, *args],
        cwd=repo_root,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def headless_run(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("headless")
    transcript = folder / "transcript.txt"
    dump = folder / "dump.jsonl.gz"
    completed = run_python(
        repo_root,
        [
            "-m",
            "asyncmachine.demo",
            "--headless",
            "--transcript",
            str(transcript),
            "--dump",
            str(dump),
            "--timeout",
            str(RUN_TIMEOUT_SECONDS),
        ],
        timeout=BUILD_TIMEOUT_SECONDS + RUN_TIMEOUT_SECONDS,
    )
    return completed, transcript, dump


pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + RUN_TIMEOUT_SECONDS + 60)


def page_id(transcript: str) -> str:
    ids = re.findall(r"browser-bar-[a-z0-9]{6}", transcript)
    assert ids, transcript
    return ids[0]


def test_headless_exits_zero(headless_run):
    completed, _transcript, _dump = headless_run

    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    assert "the scenario passed" in completed.stdout


def test_headless_server_prints_messages(headless_run):
    completed, transcript_path, _dump = headless_run
    bar_id = page_id(transcript_path.read_text())

    for text in DEFAULT_MESSAGES:
        assert f"[{bar_id}] {text}\n" in completed.stdout
    assert "[server-foo] hello\n" in completed.stdout


def test_headless_transcript_has_scenario(headless_run):
    _completed, transcript_path, _dump = headless_run
    transcript = transcript_path.read_text()
    bar_id = page_id(transcript)

    for text in DEFAULT_MESSAGES:
        assert f"server-foo          > [{bar_id}] {text}" in transcript
        assert f"{bar_id}  shows [{bar_id}] {text}" in transcript
    assert "> [server-foo] hello" in transcript
    assert f"{bar_id}  shows [server-foo] hello" in transcript
    assert "+Bored" in transcript
    assert f"{bar_id}  shows foo is bored" in transcript
    assert f"] {REPL_MESSAGE}" in transcript
    assert "am-repl             exit 0" in transcript


def test_headless_transcript_lines_have_time_and_id(headless_run):
    _completed, transcript_path, _dump = headless_run
    lines = transcript_path.read_text().splitlines()

    assert lines
    for line in lines:
        assert re.match(r"^ *\+\d+\.\d{3}s  \S+ +\S", line), line


def test_headless_no_foreign_requests(headless_run):
    completed, _transcript, _dump = headless_run

    assert "none to other hosts" in completed.stdout
    assert "requests to hosts other than 127.0.0.1" not in completed.stderr


def test_headless_dump_loads_in_am_vis(repo_root: Path, headless_run):
    _completed, transcript_path, dump = headless_run
    bar_id = page_id(transcript_path.read_text())

    inspected = run_python(
        repo_root,
        ["-m", "asyncmachine.vis_cli", "inspect-dump", str(dump)],
        timeout=60,
    )

    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    assert "server-foo" in inspected.stdout
    assert "server-bar-" + bar_id.removeprefix("browser-bar-") in inspected.stdout
    # The page's own machine reports from the browser through the relay.
    assert f"\n{bar_id}\n" in inspected.stdout


def test_headless_removes_address_files(headless_run):
    completed, _transcript, _dump = headless_run
    match = re.search(r"wrote address file (\S+)\.addr", completed.stderr)

    assert match, completed.stderr[-2000:]
    assert not Path(match.group(1) + ".addr").exists()

"""Machines, endpoints and output capture shared by the REPL tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncmachine as am
from amrepl import Output, Pool, Runner, command_line_entries
from asyncmachine.rpc.repl import ReplEndpoint, expose_repl

LOCALHOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Keeps a failing stock client from waiting rpyc's default 30 s per request.
STOCK_CONFIG = {"sync_request_timeout": 10}

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True),
    "Bored": am.State(),
    "Blocked": am.State(),
    "Hold": am.State(),
}


class Handlers:
    """Rejects every activation of Blocked, so that tests get canceled results."""

    def BlockedEnter(self, e: am.Event) -> bool:
        return False


def new_machine(mach_id: str, **kwargs: Any) -> am.Machine:
    return am.Machine(SCHEMA, id=mach_id, handlers=Handlers(), **kwargs)


class Sink(io.StringIO):
    """Collects shell output; :meth:`until` waits for a text to appear."""

    def isatty(self) -> bool:
        return False

    async def until(self, text: str, *, after: int = 0) -> int:
        """Wait until `text` appears past offset `after`; return where it ends.

        The test's own timeout bounds the wait.
        """
        while True:
            found = self.getvalue().find(text, after)
            if found >= 0:
                return found + len(text)
            await asyncio.sleep(0.01)


def sink_output() -> tuple[Output, Sink]:
    sink = Sink()
    return Output(stdout=lambda: sink, stderr=lambda: sink), sink


@contextlib.asynccontextmanager
async def exposed(
    machines: list[am.Machine], repl_dir: Path | None = None, **kwargs: Any
) -> AsyncIterator[list[ReplEndpoint]]:
    """Expose machines on 127.0.0.1 and close the endpoints afterwards."""
    endpoints = []
    try:
        for mach in machines:
            endpoints.append(await expose_repl(mach, repl_dir=repl_dir, **kwargs))
        yield endpoints
    finally:
        for endpoint in endpoints:
            await endpoint.close()


@contextlib.asynccontextmanager
async def shell_runner(
    endpoints: list[ReplEndpoint], *, background_waits: bool = False
) -> AsyncIterator[tuple[Runner, Sink]]:
    """Connect a pool to the endpoints; yield a runner and its output."""
    output, sink = sink_output()
    pool = Pool(on_event=lambda message, error: output.result(message))
    runner = Runner(pool, output, background_waits=background_waits)
    try:
        await pool.apply(command_line_entries([e.address for e in endpoints]))
        await pool.wait_first_attempts()
        yield runner, sink
    finally:
        await runner.close()
        await pool.close()


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a Python subprocess that imports the repository's code."""
    environment = dict(os.environ)
    roots = [str(REPO_ROOT / "kernel"), str(REPO_ROOT / "repl"), str(REPO_ROOT)]
    paths = [*roots, environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    environment.pop("NO_COLOR", None)
    environment.update(extra)
    return environment


PYTHON = sys.executable


class MachineProcess:
    """The process of ``tests.repl.serve_machines``, driven over its stdin."""

    def __init__(self, directory: Path, ids: list[str]) -> None:
        self.directory = directory
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.repl.serve_machines", str(directory), *ids],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line == "ready\n", line

    def command(self, line: str) -> str:
        """Send a command to the machine process and return its reply."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().split()
        assert reply[0] == "done", reply
        return reply[1]

    def wait_for_waiters(self, mach_id: str, count: int) -> None:
        """Poll until the machine has `count` pending waits (bounded by the
        test's timeout): a client's disconnect reaches the process on its own
        connection, in no fixed order with these commands."""
        while self.command(f"waiters {mach_id}") != str(count):
            pass

    def stop(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=30)

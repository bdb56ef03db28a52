"""Benchmark of am-repl commands over many machines behind REPL endpoints.

A server process runs N machines (200 by default), each with its own endpoint
and address file. This process connects to all of them as ``am-repl -d DIR``
does, and times the ``list`` and ``group-add`` commands. Between timed
``group-add`` runs an untimed ``group-remove`` restores the state, so that every
timed run executes N mutations. Each run is checked: ``list`` must print every
machine and ``group-add`` must report N executed mutations.

Usage::

    python -m bench.repl                    # 200 machines, 10 rounds
    python -m bench.repl --machines 50 --rounds 3
    python -m bench.repl --in-process       # machines and shell on one loop

Progress goes to stderr; the last stdout line is one JSON object with the
figures. The exit status is 0 when every run was correct and under the goal,
1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("asyncmachine.bench")

REPO_ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 1.0
SCHEMA_STATES = ("Start", "Ready", "Msg", "Bored")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.repl",
        description="Time am-repl's list and group-add over many machines.",
    )
    parser.add_argument(
        "--machines",
        type=int,
        default=200,
        metavar="N",
        help="number of machines (default: 200)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        metavar="N",
        help="timed runs of each command (default: 10)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the machines on the benchmark's own loop",
    )
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.machines < 1 or args.rounds < 1:
        parser.error("--machines and --rounds must be at least 1")
    return args


def _schema() -> dict[str, Any]:
    import asyncmachine as am

    return {
        "Start": am.State(add=["Ready"]),
        "Ready": am.State(require=["Start"]),
        "Msg": am.State(multi=True),
        "Bored": am.State(),
    }


async def _expose_all(directory: str, count: int) -> list[Any]:
    import asyncmachine as am
    from asyncmachine.rpc.repl import expose_repl

    endpoints = []
    for index in range(count):
        mach = am.Machine(_schema(), id=f"bench-{index:04d}")
        if index % 2:
            mach.add("Start")
        endpoints.append(await expose_repl(mach, repl_dir=directory))
    return endpoints


async def _serve(directory: str, count: int) -> None:
    """Expose the machines, print ``ready`` and serve until stdin ends."""
    endpoints = await _expose_all(directory, count)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    for endpoint in endpoints:
        await endpoint.close()


async def _time_command(runner: Any, sink: io.StringIO, line: str) -> tuple[float, str]:
    sink.seek(0)
    sink.truncate()
    start = time.perf_counter()
    status = await runner.run_line(line)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{line!r} failed with status {status}: {sink.getvalue()}")
    return elapsed, sink.getvalue()


async def _measure(directory: str, count: int, rounds: int) -> dict[str, Any]:
    from amrepl import Output, Pool, Runner, read_directory

    sink = io.StringIO()
    output = Output(stdout=lambda: sink, stderr=lambda: sink)
    pool = Pool(reconnect=False)
    runner = Runner(pool, output)
    try:
        start = time.perf_counter()
        entries, problems = read_directory(directory)
        await pool.apply(entries)
        await pool.wait_first_attempts()
        connect_seconds = time.perf_counter() - start
        connected = len(pool.connected())
        if connected != count or problems:
            raise RuntimeError(f"connected {connected} of {count}: {problems}")
        log.info("connected %d machines in %.3f s", count, connect_seconds)

        list_times, add_times = [], []
        expected_add = f"=> Executed: {count}\n=> Queued: 0\n=> Canceled: 0\n"
        for number in range(rounds):
            elapsed, text = await _time_command(runner, sink, "list")
            if text.count("\n") != 2 * count:
                raise RuntimeError(f"list printed {text.count(chr(10))} lines")
            list_times.append(elapsed)
            elapsed, text = await _time_command(runner, sink, "group-add Bored")
            if text != expected_add:
                raise RuntimeError(f"group-add printed {text!r}")
            add_times.append(elapsed)
            await _time_command(runner, sink, "group-remove Bored")
            log.info(
                "round %d: list %.3f s, group-add %.3f s",
                number + 1,
                list_times[-1],
                add_times[-1],
            )
    finally:
        await runner.close()
        await pool.close()
    return {
        "connect_s": round(connect_seconds, 4),
        "list_s_min": round(min(list_times), 4),
        "list_s_median": round(statistics.median(list_times), 4),
        "group_add_s_min": round(min(add_times), 4),
        "group_add_s_median": round(statistics.median(add_times), 4),
    }


async def _run_in_process(directory: str, count: int, rounds: int) -> dict[str, Any]:
    endpoints = await _expose_all(directory, count)
    try:
        return await _measure(directory, count, rounds)
    finally:
        for endpoint in endpoints:
            await endpoint.close()


def _run_with_server(directory: str, count: int, rounds: int) -> dict[str, Any]:
    environment = dict(os.environ)
    roots = [str(REPO_ROOT / "kernel"), str(REPO_ROOT / "repl"), str(REPO_ROOT)]
    environment["PYTHONPATH"] = os.pathsep.join(
        [*roots, environment.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.repl",
            "--serve",
            directory,
            "--machines",
            str(count),
        ],
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        line = server.stdout.readline()
        if line != "ready\n":
            raise RuntimeError(f"the server process did not start: {line!r}")
        return asyncio.run(_measure(directory, count, rounds))
    finally:
        with contextlib.suppress(OSError):
            server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the JSON figures last and return the status."""
    args = parse_args(argv)
    # Progress of this benchmark only: the endpoints log every connection at INFO.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    log.setLevel(logging.INFO)
    if args.serve:
        asyncio.run(_serve(args.serve, args.machines))
        return 0

    with tempfile.TemporaryDirectory(prefix="am-repl-bench-") as directory:
        if args.in_process:
            figures = asyncio.run(
                _run_in_process(directory, args.machines, args.rounds)
            )
        else:
            figures = _run_with_server(directory, args.machines, args.rounds)

    within_goal = (
        figures["list_s_median"] < GOAL_SECONDS
        and figures["group_add_s_median"] < GOAL_SECONDS
    )
    record = {
        "benchmark": "repl",
        "machines": args.machines,
        "rounds": args.rounds,
        "in_process": args.in_process,
        **figures,
        "goal_s": GOAL_SECONDS,
        "within_goal": within_goal,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }

    print(
        f"list: median {figures['list_s_median']:.3f} s, "
        f"group-add: median {figures['group_add_s_median']:.3f} s "
        f"over {args.machines} machines (goal: under {GOAL_SECONDS:g} s each)"
    )
    print(json.dumps(record))
    return 0 if within_goal else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Peer benchmark of the asyncmachine core against transitions and python-statemachine.

Runs the flat (20 exclusive states), parallel (4 groups of 5) and memory (one
20-state machine) workloads of ``bench.workloads`` on every engine in one
session. Each (engine, workload) pair runs in its own worker process, and the
rounds are interleaved (every engine once, then every engine again) so that
background load hits all engines alike. After every run the worker checks that
the handler counts and the final active states are the expected ones.

Usage::

    python -m bench.core                    # the full run: M=10000, 3 rounds
    python -m bench.core --quick            # a smoke run with small numbers
    python -m bench.core --json out.json    # also write every figure to a file

Progress goes to stderr, the table to stdout, and the last stdout line is one
JSON object with the key figures. The exit status is 0 when every run finished
and was correct, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.engines import ENGINES
from bench.measure import WORKLOADS, measure
from bench.workloads import FLAT_STATES, GROUPS, PER_GROUP, REJECT_EVERY

log = logging.getLogger("asyncmachine.bench")

REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINE = "transitions"
CANDIDATE = "asyncmachine"

# The project's goals for asyncmachine, measured in the same session as the
# peers: throughput ratios to transitions (best-of), and absolute figures for
# one flat 20-state machine.
GOALS = {
    "flat_ratio_min": 1.5,
    "parallel_ratio_min": 12.0,
    "memory_bytes_max": 40_000,
    "build_us_max": 500.0,
}

QUICK = {"mutations": 500, "rounds": 1, "repeat": 1, "instances": 10}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core",
        description=(
            "Compare asyncmachine with transitions and python-statemachine on the "
            "flat, parallel and memory workloads."
        ),
    )
    parser.add_argument(
        "--mutations",
        type=int,
        default=10_000,
        metavar="M",
        help="mutations per timed run (default: 10000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="R",
        help="interleaved rounds over all engines (default: 3)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per worker, each on a new machine (default: 3)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=200,
        help="machines built for the memory workload (default: 200)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated engines (default: {','.join(ENGINES)})",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds before a worker process is stopped (default: 300)",
    )
    parser.add_argument("--json", metavar="FILE", help="write all figures to FILE")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smoke run with M=500, 1 round, 1 repeat and 10 instances. It checks "
            "correctness, and its figures are too noisy to compare"
        ),
    )
    parser.add_argument(
        "--worker",
        nargs=2,
        metavar=("ENGINE", "WORKLOAD"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)

    args.engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = [name for name in args.engines if name not in ENGINES]
    if unknown:
        parser.error(f"unknown engine(s) {unknown}, expected some of {list(ENGINES)}")
    args.workloads = [name.strip() for name in args.workloads.split(",") if name]
    unknown = [name for name in args.workloads if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}, expected some of {WORKLOADS}")
    for name in ("mutations", "rounds", "repeat", "instances"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        engine, workload = args.worker
        result = measure(engine, workload, args.mutations, args.repeat, args.instances)
        print(json.dumps(result))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    environment = describe_environment()
    raw = run_rounds(args)
    summary = summarise(raw, args)
    ratios = compute_ratios(summary)
    print(format_report(environment, args, summary, ratios))

    if args.json:
        record = {
            "environment": environment,
            "options": vars(args),
            "summary": summary,
            "ratios": ratios,
            "raw": raw,
        }
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        log.info("wrote %s", args.json)

    all_correct = all(row["status"] == "ok" for row in summary)
    print(json.dumps(key_figures(summary, ratios, all_correct), sort_keys=True))
    return 0 if all_correct else 1


def run_rounds(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every (engine, workload) pair once per round, each in a new process.

    The engine order rotates from round to round.
    """
    raw = []
    for round_index in range(args.rounds):
        shift = round_index % len(args.engines)
        engines = args.engines[shift:] + args.engines[:shift]
        for workload in args.workloads:
            for engine in engines:
                log.info("round %d: %s %s", round_index + 1, workload, engine)
                result = run_worker(engine, workload, args)
                result["round"] = round_index + 1
                raw.append(result)
    return raw


def run_worker(engine: str, workload: str, args: argparse.Namespace) -> dict:
    """Run ``measure`` for one pair in a subprocess and return its result.

    A failed, timed-out or silent worker gives a dict with an ``error`` key.
    """
    command = [
        sys.executable,
        "-m",
        "bench.core",
        "--worker",
        engine,
        workload,
        "--mutations",
        str(args.mutations),
        "--repeat",
        str(args.repeat),
        "--instances",
        str(args.instances),
    ]
    failure = {"engine": engine, "workload": workload}
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=_worker_environment(),
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        log.error("%s %s: worker timed out after %s s", workload, engine, args.timeout)
        return {**failure, "error": f"timed out after {args.timeout} s"}

    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        stderr = completed.stderr.strip().splitlines()
        message = stderr[-1] if stderr else f"exit status {completed.returncode}"
        log.error("%s %s: worker failed: %s", workload, engine, message)
        return {**failure, "error": message}
    return json.loads(lines[-1])


def _worker_environment() -> dict[str, str]:
    """Put the repository root and ``kernel/`` first on the worker's path.

    This makes ``bench`` and ``asyncmachine`` importable from a checkout that
    is not installed.
    """
    environment = dict(os.environ)
    paths = [str(REPO_ROOT), str(REPO_ROOT / "kernel")]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def summarise(raw: list[dict], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Reduce the per-round results to one row per (workload, engine).

    Throughput rows give best-of (the highest rate of any timed run) and the
    median of the per-round medians. Memory rows give the median bytes and the
    lowest build time. A row's status is ``ok`` only when every round ran and
    was correct.
    """
    rows = []
    for workload in args.workloads:
        for engine in args.engines:
            results = [
                r for r in raw if r["engine"] == engine and r["workload"] == workload
            ]
            rows.append(_summarise_pair(engine, workload, results))
    return rows


def _summarise_pair(engine: str, workload: str, results: list[dict]) -> dict:
    row: dict[str, Any] = {"engine": engine, "workload": workload}
    errors = [r["error"] for r in results if "error" in r]
    finished = [r for r in results if "error" not in r]
    wrong = [r for r in finished if not r["correct"]]
    if errors:
        row["status"] = "ERROR"
        row["detail"] = errors[0]
    elif wrong:
        first = wrong[0]
        row["status"] = "WRONG"
        row["detail"] = (
            f"counts {first['counts']} active {first['active']}, expected "
            f"{first['expected_counts']} and {first['expected_active']}"
        )
    else:
        row["status"] = "ok"
    if not finished:
        return row

    if workload == "memory":
        # Bytes vary little between rounds. Build time is a rate like the
        # throughput figures, so the least disturbed round counts.
        row["rounds"] = len(finished)
        row["bytes_per_machine"] = int(
            statistics.median(r["bytes_per_machine"] for r in finished)
        )
        row["build_us"] = min(r["build_us"] for r in finished)
        row["instances"] = finished[0]["instances"]
    else:
        row["rounds"] = len(finished)
        row["best_per_s"] = max(r["best_per_s"] for r in finished)
        row["median_per_s"] = statistics.median(r["median_per_s"] for r in finished)
        row["best_us"] = 1e6 / row["best_per_s"]
    return row


def compute_ratios(summary: list[dict]) -> dict[str, Any]:
    """Compare asyncmachine with transitions and with the goals.

    Throughput ratios are asyncmachine's rate divided by transitions' rate
    (above 1 means asyncmachine is faster), from best-of and from medians. A
    figure that is missing (an engine failed or was not run) gives None.
    """
    rows = {(row["workload"], row["engine"]): row for row in summary}
    ratios: dict[str, Any] = {}
    for workload in ("flat", "parallel"):
        candidate = rows.get((workload, CANDIDATE), {})
        baseline = rows.get((workload, BASELINE), {})
        for figure in ("best_per_s", "median_per_s"):
            key = f"{workload}_{figure.removesuffix('_per_s')}"
            if figure in candidate and figure in baseline:
                ratios[key] = candidate[figure] / baseline[figure]
            else:
                ratios[key] = None

    memory = rows.get(("memory", CANDIDATE), {})
    ratios["memory_bytes"] = memory.get("bytes_per_machine")
    ratios["build_us"] = memory.get("build_us")

    goals = {
        "flat": _at_least(ratios["flat_best"], GOALS["flat_ratio_min"]),
        "parallel": _at_least(ratios["parallel_best"], GOALS["parallel_ratio_min"]),
        "memory": _at_most(ratios["memory_bytes"], GOALS["memory_bytes_max"]),
        "build": _below(ratios["build_us"], GOALS["build_us_max"]),
    }
    ratios["goals_met"] = goals
    return ratios


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _below(value: float | None, goal: float) -> bool | None:
    return None if value is None else value < goal


def describe_environment() -> dict[str, Any]:
    """Return the interpreter, platform, CPU count, engine versions and commit."""
    environment: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    for distribution in ("asyncmachine", "transitions", "python-statemachine"):
        try:
            environment[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            environment[distribution] = None
    environment["commit"] = _git_commit()
    return environment


def _git_commit() -> str | None:
    """Return the checkout's short commit id, with "+dirty" for local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + "+dirty" if changes else commit


def format_report(
    environment: dict, args: argparse.Namespace, summary: list[dict], ratios: dict
) -> str:
    """Format the environment, the result table and the goal checks as text."""
    lines = [
        "# " + json.dumps(environment, sort_keys=True),
        f"# flat: {FLAT_STATES} states, parallel: {GROUPS}x{PER_GROUP}, "
        f"M={args.mutations}, repeat={args.repeat}, rounds={args.rounds}, "
        f"memory: {args.instances} machines, every {REJECT_EVERY}th enter "
        "negotiation rejects",
    ]
    throughput = [row for row in summary if row["workload"] != "memory"]
    if throughput:
        lines.append("")
        lines.append(
            f"{'workload':<9} {'engine':<20} {'best mut/s':>11} {'us/mut':>8} "
            f"{'median mut/s':>13}  status"
        )
        lines.extend(_format_throughput_row(row) for row in throughput)
    memory = [row for row in summary if row["workload"] == "memory"]
    if memory:
        lines.append("")
        lines.append(
            f"{'workload':<9} {'engine':<20} {'B/machine':>11} {'us/build':>8} "
            f"{'':>13}  status"
        )
        lines.extend(_format_memory_row(row) for row in memory)

    lines.append("")
    lines.append(f"# {CANDIDATE} vs {BASELINE} (rate ratio, above 1 is faster)")
    goals = ratios["goals_met"]
    lines.append(
        _format_goal(
            "flat",
            ratios["flat_best"],
            ratios["flat_median"],
            f">= {GOALS['flat_ratio_min']}x",
            goals["flat"],
        )
    )
    lines.append(
        _format_goal(
            "parallel",
            ratios["parallel_best"],
            ratios["parallel_median"],
            f">= {GOALS['parallel_ratio_min']}x",
            goals["parallel"],
        )
    )
    lines.append(
        _format_absolute(
            "memory",
            ratios["memory_bytes"],
            "B/machine",
            f"<= {GOALS['memory_bytes_max']:,} B",
            goals["memory"],
        )
    )
    lines.append(
        _format_absolute(
            "build",
            ratios["build_us"],
            "us/machine",
            f"< {GOALS['build_us_max']:g} us",
            goals["build"],
        )
    )
    return "\n".join(lines)


def _format_status(row: dict) -> str:
    if "detail" in row:
        return f"{row['status']}: {row['detail']}"
    return row["status"]


def _format_throughput_row(row: dict) -> str:
    prefix = f"{row['workload']:<9} {row['engine']:<20}"
    if "best_per_s" not in row:
        return f"{prefix} {'-':>11} {'-':>8} {'-':>13}  {_format_status(row)}"
    return (
        f"{prefix} {row['best_per_s']:>11,.0f} {row['best_us']:>8.2f} "
        f"{row['median_per_s']:>13,.0f}  {_format_status(row)}"
    )


def _format_memory_row(row: dict) -> str:
    prefix = f"{row['workload']:<9} {row['engine']:<20}"
    if "bytes_per_machine" not in row:
        return f"{prefix} {'-':>11} {'-':>8} {'':>13}  {_format_status(row)}"
    return (
        f"{prefix} {row['bytes_per_machine']:>11,d} {row['build_us']:>8.1f} "
        f"{'':>13}  {_format_status(row)}"
    )


def _verdict(met: bool | None) -> str:
    if met is None:
        return "not measured"
    return "goal met" if met else "goal missed"


def _format_goal(
    name: str, best: float | None, median: float | None, goal: str, met: bool | None
) -> str:
    if best is None or median is None:
        return f"{name:<9} -  goal {goal}: {_verdict(met)}"
    return (
        f"{name:<9} best x{best:.2f}, median x{median:.2f}  "
        f"goal {goal}: {_verdict(met)}"
    )


def _format_absolute(
    name: str, value: float | None, unit: str, goal: str, met: bool | None
) -> str:
    if value is None:
        return f"{name:<9} -  goal {goal}: {_verdict(met)}"
    return f"{name:<9} {value:,.0f} {unit}  goal {goal}: {_verdict(met)}"


def key_figures(summary: list[dict], ratios: dict, all_correct: bool) -> dict:
    """Return the figures for the last stdout line, rounded for reading."""
    figures: dict[str, Any] = {"correct": all_correct}
    for row in summary:
        entry: dict[str, Any] = {"status": row["status"]}
        if "best_per_s" in row:
            entry["best_per_s"] = round(row["best_per_s"])
            entry["median_per_s"] = round(row["median_per_s"])
        if "bytes_per_machine" in row:
            entry["bytes_per_machine"] = row["bytes_per_machine"]
            entry["build_us"] = round(row["build_us"], 1)
        figures.setdefault(row["workload"], {})[row["engine"]] = entry
    figures["ratios"] = {
        key: (round(value, 2) if isinstance(value, float) else value)
        for key, value in ratios.items()
        if key != "goals_met"
    }
    figures["goals_met"] = ratios["goals_met"]
    return figures


if __name__ == "__main__":
    sys.exit(main())

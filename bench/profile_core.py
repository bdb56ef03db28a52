"""Profile the asyncmachine core on the flat and parallel peer workloads.

Wall-clock figures on a shared machine are noisy, so this helper reports
process CPU time (``time.process_time``) and, with ``--profile``, the cProfile
call counts, which do not depend on load. It drives the machines through
``bench.peers.AsyncmachineAdapter``, exactly as ``bench.core`` does.

Usage, from the repository root::

    python -m bench.profile_core                      # CPU time, both workloads
    python -m bench.profile_core --profile --top 25   # plus call counts
    python -m bench.profile_core --plans              # plan cache statistics
    python -m bench.profile_core --peer transitions   # CPU-time ratio to a peer

The ``--peer`` ratio compares CPU times in one process, so other processes
disturb it less than the wall-clock ratio of ``bench.core``, but it is not the
same figure.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "kernel") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "kernel"))

from bench.engines import ENGINES, load_engine  # noqa: E402
from bench.peers import AsyncmachineAdapter  # noqa: E402
from bench.workloads import (  # noqa: E402
    FLAT_STATES,
    GROUPS,
    PER_GROUP,
    expected_counts,
    flat_targets,
    parallel_targets,
)

WORKLOADS = ("flat", "parallel")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_core",
        description="Measure CPU time and call counts of the core's mutations.",
    )
    parser.add_argument(
        "--mutations",
        type=int,
        default=10_000,
        metavar="M",
        help="mutations per run (default: 10000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed runs per workload, each on a new machine (default: 5)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one run with cProfile and print the busiest functions",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=20,
        help="functions listed per profile (default: 20)",
    )
    parser.add_argument(
        "--sort",
        default="tottime",
        help="pstats sort key for the profile listing (default: tottime)",
    )
    parser.add_argument(
        "--plans",
        action="store_true",
        help="print how many resolution plans each workload stores",
    )
    parser.add_argument(
        "--peer",
        choices=[name for name in ENGINES if name != "asyncmachine"],
        help="also time this engine and print asyncmachine's CPU-time ratio to it",
    )
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}, expected some of {WORKLOADS}")
    return args


def build(adapter: Any, workload: str) -> Any:
    if workload == "flat":
        return adapter.build_flat(FLAT_STATES)
    return adapter.build_parallel(GROUPS, PER_GROUP)


def targets_for(workload: str, mutations: int) -> tuple[list[Any], list[str]]:
    if workload == "flat":
        return flat_targets(mutations, FLAT_STATES)
    return parallel_targets(mutations, GROUPS, PER_GROUP)


def check(runner: Any, mutations: int, expected_active: list[str]) -> None:
    """Raise AssertionError when the run's handler counts or states are wrong.

    The message lists handler timeouts, because on a loaded machine a handler
    that is descheduled for longer than the handler timeout (100 ms) cancels
    its transition, and the counts then differ.
    """
    counts = runner.counts.as_dict()
    expected = expected_counts(mutations)
    if counts != expected:
        machine = getattr(runner, "machine", None)
        timeouts = machine.internal_errors() if machine is not None else []
        raise AssertionError(
            f"handler counts {counts}, expected {expected}; handler timeouts: "
            f"{[str(err) for err in timeouts]}"
        )
    active = runner.active()
    if active != expected_active:
        raise AssertionError(f"active states {active}, expected {expected_active}")


def time_workload(
    adapter: Any, workload: str, mutations: int, repeat: int
) -> list[float]:
    """Return the CPU seconds of each of `repeat` runs on fresh machines."""
    targets, expected_active = targets_for(workload, mutations)
    build(adapter, workload).run(targets[:1000])
    seconds = []
    for _ in range(repeat):
        runner = build(adapter, workload)
        gc.collect()
        start = time.process_time()
        runner.run(targets)
        seconds.append(time.process_time() - start)
        check(runner, mutations, expected_active)
    return seconds


def profile_workload(
    adapter: AsyncmachineAdapter, workload: str, mutations: int, top: int, sort: str
) -> None:
    targets, expected_active = targets_for(workload, mutations)
    build(adapter, workload).run(targets[:1000])
    runner = build(adapter, workload)
    profiler = cProfile.Profile()
    profiler.runcall(runner.run, targets)
    check(runner, mutations, expected_active)
    stats = pstats.Stats(profiler)
    calls = sum(row[1] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{workload}: {calls} function calls, {calls / mutations:.1f} per mutation")
    stats.sort_stats(sort).print_stats(top)


def report_plans(adapter: AsyncmachineAdapter, workload: str, mutations: int) -> None:
    targets, _expected = targets_for(workload, mutations)
    runner = build(adapter, workload)
    plans = runner.machine._compiled.plans
    plans.clear()
    runner.run(targets)
    print(f"{workload}: {len(plans)} plans stored after {mutations} mutations")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    adapter = AsyncmachineAdapter()
    peer = load_engine(args.peer) if args.peer else None
    for workload in args.workloads:
        seconds = time_workload(adapter, workload, args.mutations, args.repeat)
        best = min(seconds)
        median = statistics.median(seconds)
        line = (
            f"{workload:<9} best {best / args.mutations * 1e6:6.2f} us/mut, "
            f"median {median / args.mutations * 1e6:6.2f} us/mut (CPU time)"
        )
        if peer is not None:
            peer_seconds = time_workload(peer, workload, args.mutations, args.repeat)
            line += (
                f", {args.peer} best {min(peer_seconds) / args.mutations * 1e6:.2f}"
                f" us/mut, ratio x{min(peer_seconds) / best:.2f}"
            )
        print(line)
    for workload in args.workloads if args.plans else ():
        report_plans(adapter, workload, args.mutations)
    for workload in args.workloads if args.profile else ():
        profile_workload(adapter, workload, args.mutations, args.top, args.sort)
    return 0


if __name__ == "__main__":
    sys.exit(main())

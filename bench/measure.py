"""Timed runs of one engine on one workload, executed inside a worker process.

``bench.core`` starts one worker process per (engine, workload, round) and
reads the dict that ``measure`` returns, serialised as the last line of the
worker's stdout.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench.engines import load_engine
from bench.workloads import (
    FLAT_STATES,
    GROUPS,
    PER_GROUP,
    expected_counts,
    flat_targets,
    parallel_targets,
)

WORKLOADS = ("flat", "parallel", "memory")

# Mutations run on a throwaway machine before timing, so that imports, caches
# and the interpreter's specialised bytecode are warm.
WARMUP_MUTATIONS = 1000


def measure(
    engine: str, workload: str, mutations: int, repeat: int, instances: int
) -> dict[str, Any]:
    """Measure one engine on one workload.

    Args:
        engine: a key of ``bench.engines.ENGINES``.
        workload: ``"flat"``, ``"parallel"`` or ``"memory"``.
        mutations: mutations per timed run (throughput workloads).
        repeat: timed runs, each on a freshly built machine.
        instances: machines built for the memory workload.

    Returns:
        A JSON-serialisable dict with the measured figures and the correctness
        checks (``correct`` plus the counts and active states seen).

    Raises:
        ValueError: ``workload`` is not one of ``WORKLOADS``.
    """
    adapter = load_engine(engine)
    result: dict[str, Any] = {
        "engine": engine,
        "workload": workload,
        "note": adapter.note,
    }
    if workload == "memory":
        result.update(_measure_memory(adapter, instances))
    elif workload in ("flat", "parallel"):
        result.update(_measure_throughput(adapter, workload, mutations, repeat))
    else:
        raise ValueError(f"unknown workload {workload!r}, expected one of {WORKLOADS}")
    return result


def _measure_throughput(
    adapter: Any, workload: str, mutations: int, repeat: int
) -> dict[str, Any]:
    build: Callable[[], Any]
    if workload == "flat":
        targets, expected_active = flat_targets(mutations, FLAT_STATES)

        def build() -> Any:
            return adapter.build_flat(FLAT_STATES)

    else:
        targets, expected_active = parallel_targets(mutations, GROUPS, PER_GROUP)

        def build() -> Any:
            return adapter.build_parallel(GROUPS, PER_GROUP)

    build().run(targets[:WARMUP_MUTATIONS])

    seconds = []
    runner = None
    for _ in range(repeat):
        runner = build()
        gc.collect()
        start = time.perf_counter()
        runner.run(targets)
        seconds.append(time.perf_counter() - start)

    # The last runner's counters and states stand for all runs: every run
    # replays the same targets on a fresh machine.
    counts = runner.counts.as_dict()
    active = runner.active()
    expected = expected_counts(mutations)
    median = statistics.median(seconds)
    return {
        "mutations": mutations,
        "repeat": repeat,
        "seconds": [round(value, 6) for value in seconds],
        "best_per_s": mutations / min(seconds),
        "median_per_s": mutations / median,
        "counts": counts,
        "expected_counts": expected,
        "active": active,
        "expected_active": expected_active,
        "correct": counts == expected and active == expected_active,
    }


def _measure_memory(adapter: Any, instances: int) -> dict[str, Any]:
    """Measure build time and retained bytes per flat machine.

    Build time is measured without tracemalloc, which slows allocations down.
    The bytes are what tracemalloc reports as still allocated while
    ``instances`` machines are alive, divided by ``instances``. Memory shared
    by all machines (classes, cached schemas) was allocated before tracing
    started, so it is not counted.
    """
    adapter.build_flat(FLAT_STATES)
    gc.collect()

    start = time.perf_counter()
    machines = [adapter.build_flat(FLAT_STATES) for _ in range(instances)]
    build_seconds = time.perf_counter() - start
    del machines
    gc.collect()

    tracemalloc.start()
    machines = [adapter.build_flat(FLAT_STATES) for _ in range(instances)]
    gc.collect()
    traced_bytes, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # A freshly built machine has S0 active and no handler calls counted.
    active = machines[-1].active()
    counts = machines[-1].counts.as_dict()
    expected = expected_counts(0)
    return {
        "instances": instances,
        "bytes_per_machine": traced_bytes // instances,
        "build_us": build_seconds / instances * 1e6,
        "counts": counts,
        "expected_counts": expected,
        "active": active,
        "expected_active": ["S0"],
        "correct": counts == expected and active == ["S0"],
    }

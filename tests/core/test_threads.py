"""Tests of mutations and waits across threads."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

import asyncmachine as am

THREADS = 4
ADDS_PER_THREAD = 500
TOTAL_ADDS = THREADS * ADDS_PER_THREAD


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads often, so that mutations interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


def run_threads(target: Callable[[], None], count: int = THREADS) -> None:
    """Start `count` threads running `target` together and join them."""
    barrier = threading.Barrier(count)

    def worker() -> None:
        barrier.wait(timeout=5)
        target()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)


def test_multi_adds_serialized() -> None:
    mach = am.Machine({"M": am.State(multi=True)}, id="threads", queue_limit=TOTAL_ADDS)
    results: list[am.Result] = []
    errors: list[BaseException] = []

    def add_many() -> None:
        try:
            for _ in range(ADDS_PER_THREAD):
                results.append(mach.add("M"))
        except BaseException as err:
            errors.append(err)

    run_threads(add_many)

    assert errors == []
    assert len(results) == TOTAL_ADDS
    assert all(r.executed or r.queued for r in results)
    # The first activation ticks by 1, every Multi re-entry by 2.
    assert mach.tick("M") == 1 + 2 * (TOTAL_ADDS - 1)
    assert mach.queue_tick() == 1 + TOTAL_ADDS
    assert mach.queue_len() == 0
    assert mach.transition() is None


def test_queued_results_reach_queue_tick() -> None:
    mach = am.Machine({"M": am.State(multi=True)}, queue_limit=TOTAL_ADDS)
    results: list[am.Result] = []

    def add_many() -> None:
        for _ in range(ADDS_PER_THREAD):
            results.append(mach.add("M"))

    run_threads(add_many)
    queued = [int(r) for r in results if r.queued]

    assert len(set(queued)) == len(queued)
    assert all(tick <= mach.queue_tick() for tick in queued)
    assert all(mach.when_queue(tick).done() for tick in queued)


def test_queue_limit_under_threads() -> None:
    mach = am.Machine({"M": am.State(multi=True)}, queue_limit=10)
    results: list[am.Result] = []

    def add_many() -> None:
        for _ in range(ADDS_PER_THREAD):
            results.append(mach.add("M"))

    run_threads(add_many)
    applied = [r for r in results if not r.canceled]

    # Every mutation that was not canceled at the queue's entry ran once.
    assert mach.tick("M") == 1 + 2 * (len(applied) - 1)
    assert mach.queue_tick() == 1 + len(applied)
    assert mach.queue_len() == 0


def test_distinct_states_from_threads() -> None:
    names = [f"S{i}" for i in range(THREADS)]
    mach = am.Machine({name: am.State(multi=True) for name in names})
    counter = iter(range(THREADS))
    lock = threading.Lock()

    def add_own() -> None:
        with lock:
            name = names[next(counter)]
        for _ in range(100):
            mach.add(name)
            mach.remove(name)

    run_threads(add_own)

    assert mach.time(names) == [200] * THREADS
    assert mach.active_states() == []


def test_waiter_resolved_from_thread() -> None:
    async def main() -> None:
        mach = am.Machine({"A": am.State(), "B": am.State()})
        waiter = mach.when(["A", "B"])
        ready = threading.Event()

        def mutate() -> None:
            ready.wait(timeout=5)
            mach.add("A")
            mach.add("B")

        thread = threading.Thread(target=mutate)
        thread.start()
        ready.set()
        try:
            await asyncio.wait_for(waiter, 5)
        finally:
            thread.join(timeout=5)

        assert waiter.done()
        assert mach.is_active("A", "B")

    asyncio.run(main())


def test_state_ctx_ended_from_thread() -> None:
    async def main() -> None:
        mach = am.Machine({"A": am.State()})
        mach.add("A")
        ctx = mach.state_ctx("A")

        thread = threading.Thread(target=mach.remove, args=("A",))
        thread.start()
        try:
            await asyncio.wait_for(ctx.wait(), 5)
        finally:
            thread.join(timeout=5)

        assert ctx.done()

    asyncio.run(main())


def test_mutation_during_handler_queued() -> None:
    entered = threading.Event()
    release = threading.Event()
    other_results: list[am.Result] = []
    states_in_handler: list[bool] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            entered.set()
            release.wait(timeout=5)
            states_in_handler.append(e.machine.is_active("B"))

    mach = am.Machine(
        {"A": am.State(), "B": am.State()},
        handlers=Handlers(),
        handler_timeout=None,
    )

    def other_thread() -> None:
        entered.wait(timeout=5)
        other_results.append(mach.add("B"))
        release.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    result = mach.add("A")
    thread.join(timeout=5)

    assert result is am.Result.EXECUTED
    assert other_results[0].queued
    assert int(other_results[0]) == 3
    assert states_in_handler == [False]
    assert mach.is_active("A", "B")
    assert mach.queue_tick() == 3


def test_when_races_other_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    mach = am.Machine({"A": am.State()})
    register = am.Machine._register

    def register_after_other_thread(self: am.Machine, waiter: am.Waiter) -> am.Waiter:
        # Simulate a thread switch that lands after when() has read the
        # active states and before it registers the waiter.
        thread = threading.Thread(target=mach.add, args=("A",))
        thread.start()
        thread.join(timeout=5)
        return register(self, waiter)

    monkeypatch.setattr(am.Machine, "_register", register_after_other_thread)

    waiter = mach.when("A")

    assert mach.is_active("A")
    assert waiter.done()

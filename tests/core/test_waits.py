"""Tests of waiters, state contexts and forked tasks on a real asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import asyncmachine as am

SCHEMA = {
    "A": am.State(),
    "B": am.State(),
    "C": am.State(require=["Missing"]),
    "Missing": am.State(),
    "M": am.State(multi=True),
}


def make_machine(**kwargs: Any) -> am.Machine:
    """Return a machine with states A and B, Multi M, and C, which requires Missing."""
    kwargs.setdefault("id", "waits")
    return am.Machine(SCHEMA, **kwargs)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main` on a new event loop."""
    asyncio.run(main())


async def mutate_later(*steps: Callable[[], Any]) -> None:
    """Run each step in turn, yielding to the loop before every step."""
    for step in steps:
        await asyncio.sleep(0)
        step()


async def await_waiter(waiter: am.Waiter) -> None:
    """Await `waiter`, so that a task can wait on it."""
    await waiter


class FlagContext:
    """A ctx argument for waits that ends when `ended` is set to True."""

    def __init__(self) -> None:
        self.ended = False

    def done(self) -> bool:
        return self.ended


# when and when_not


def test_when_resolved_by_other_task() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when(["A", "B"])
        waiting = asyncio.create_task(asyncio.wait_for(waiter, 5))

        mutator = asyncio.create_task(
            mutate_later(lambda: mach.add("A"), lambda: mach.add("B"))
        )
        await asyncio.wait_for(mutator, 5)
        await waiting

        assert waiter.done()
        assert mach.is_active("A", "B")

    run(main)


def test_when_active_resolved_now() -> None:
    mach = make_machine()
    mach.add("A")

    waiter = mach.when("A")

    assert waiter.done()


def test_when_needs_all_at_once() -> None:
    mach = make_machine()
    waiter = mach.when(["A", "B"])

    mach.add("A")
    mach.remove("A")
    mach.add("B")

    assert not waiter.done()
    mach.add("A")
    assert waiter.done()


def test_when_ignores_canceled_transition() -> None:
    mach = make_machine()
    waiter = mach.when("C")

    mach.add("C")

    assert not waiter.done()


def test_when_not_resolved_by_remove() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add(["A", "B"])
        waiter = mach.when_not(["A", "B"])

        asyncio.create_task(
            mutate_later(lambda: mach.remove("A"), lambda: mach.remove("B"))
        )
        await asyncio.wait_for(waiter, 5)

        assert mach.active_states() == []

    run(main)


def test_when_not_inactive_resolved_now() -> None:
    mach = make_machine()

    assert mach.when_not("A").done()


def test_when_err_resolved_by_add_err() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when_err()

        asyncio.create_task(mutate_later(lambda: mach.add_err(OSError("failed"))))
        await asyncio.wait_for(waiter, 5)

        assert isinstance(mach.err(), OSError)

    run(main)


def test_identical_waiters_shared() -> None:
    mach = make_machine()

    first = mach.when(["A", "B"])
    second = mach.when(["B", "A"])
    other = mach.when(["A"])

    assert first is second
    assert other is not first


def test_waiters_with_ctx_not_shared() -> None:
    mach = make_machine()

    plain = mach.when("A")
    bound = mach.when("A", ctx=FlagContext())

    assert plain is not bound


def test_when_unknown_state_raises() -> None:
    mach = make_machine()

    with pytest.raises(am.StateError):
        mach.when(["A", "Zed"])


def test_waiter_repr_shows_status() -> None:
    mach = make_machine()
    waiter = mach.when("A")

    assert repr(waiter) == "<Waiter when A pending>"
    mach.add("A")
    assert repr(waiter) == "<Waiter when A done>"


# Clock waits


def test_when_time_reaches_ticks() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when_time(["A", "M"], [2, 3])

        asyncio.create_task(
            mutate_later(
                lambda: mach.add(["A", "M"]),
                lambda: mach.remove("A"),
                lambda: mach.add("M"),
            )
        )
        await asyncio.wait_for(waiter, 5)

        assert mach.tick("A") == 2
        assert mach.tick("M") == 3

    run(main)


def test_when_time_partial_pending() -> None:
    mach = make_machine()
    waiter = mach.when_time(["A", "B"], [1, 1])

    mach.add("A")

    assert not waiter.done()


def test_when_time_reached_now() -> None:
    mach = make_machine()
    mach.add("A")

    assert mach.when_time(["A"], [1]).done()


def test_when_time_length_mismatch_errs() -> None:
    mach = make_machine()

    waiter = mach.when_time(["A", "B"], [1])

    assert waiter.done()
    assert mach.is_err()
    assert isinstance(mach.err(), ValueError)


def test_when_time_negative_raises() -> None:
    mach = make_machine()

    with pytest.raises(TypeError):
        mach.when_time(["A"], [-1])


def test_when_ticks_counts_changes() -> None:
    mach = make_machine()
    mach.add("A")
    waiter = mach.when_ticks("A", 3)

    mach.remove("A")
    mach.add("A")
    assert not waiter.done()

    mach.remove("A")
    assert waiter.done()


def test_when_next_active_skips_current() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add("A")
        waiter = mach.when_next_active("A")

        mach.remove("A")
        assert not waiter.done()

        asyncio.create_task(mutate_later(lambda: mach.add("A")))
        await asyncio.wait_for(waiter, 5)

        assert mach.tick("A") == 3

    run(main)


def test_when_next_active_inactive() -> None:
    mach = make_machine()
    waiter = mach.when_next_active("A")

    mach.add("A")

    assert waiter.done()


def test_when_query_checks_clock() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when_query(lambda clock: clock["M"] >= 3)

        asyncio.create_task(mutate_later(lambda: mach.add("M"), lambda: mach.add("M")))
        await asyncio.wait_for(waiter, 5)

        assert mach.tick("M") == 3

    run(main)


# Args and queue waits


def test_when_args_matches_subset() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when_args("M", {"id": 2})

        mach.add("M", {"id": 1})
        assert not waiter.done()

        asyncio.create_task(mutate_later(lambda: mach.add("M", {"id": 2, "x": 0})))
        await asyncio.wait_for(waiter, 5)

        assert mach.tick("M") == 3

    run(main)


def test_when_args_other_state_ignored() -> None:
    mach = make_machine()
    waiter = mach.when_args("A", {"id": 1})

    mach.add("B", {"id": 1})

    assert not waiter.done()


def test_when_args_with_handlers() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.args["seen"] = True

    mach = make_machine(handlers=Handlers())
    waiter = mach.when_args("A", {"seen": True})

    mach.add("A")

    assert waiter.done()


def test_when_queue_resolved_at_tick() -> None:
    queued: list[am.Result] = []
    waiters: list[am.Waiter] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            result = e.machine.add("B")
            queued.append(result)
            waiters.append(e.machine.when_queue(int(result)))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert queued[0].queued
    assert waiters[0].done()


def test_when_queue_past_tick_resolved() -> None:
    mach = make_machine()
    mach.add("A")

    assert mach.when_queue(mach.queue_tick()).done()
    assert not mach.when_queue(mach.queue_tick() + 1).done()


@pytest.mark.xfail(
    strict=True,
    reason="kept as in asyncmachine-go: when_queue waiters are checked only "
    "after accepted transitions, so a "
    "queued mutation that is canceled leaves its waiter pending",
)
def test_when_queue_canceled_mutation() -> None:
    waiters: list[am.Waiter] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            result = e.machine.add("C")
            waiters.append(e.machine.when_queue(int(result)))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert mach.queue_tick() == 3
    assert not mach.is_active("C")
    assert waiters[0].done()


def test_when_queue_ends_after_drain() -> None:
    waiters: list[am.Waiter] = []
    states_at_end: list[bool] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.machine.add("B")
            waiter = e.machine.when_queue_ends()
            waiter.add_done_callback(
                lambda _: states_at_end.append(e.machine.is_active("B"))
            )
            waiters.append(waiter)

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert waiters[0].done()
    assert states_at_end == [True]


def test_when_queue_ends_idle() -> None:
    mach = make_machine()

    assert mach.when_queue_ends().done()


# Cancelling waiters


def test_waiter_cancel_cancels_awaiting_task() -> None:
    async def main() -> None:
        mach = make_machine()
        waiter = mach.when("A")
        waiting = asyncio.create_task(await_waiter(waiter))
        await asyncio.sleep(0)

        waiter.cancel()
        done, _ = await asyncio.wait([waiting], timeout=5)

        assert done == {waiting}
        assert waiting.cancelled()
        assert waiter.cancelled()
        assert waiter.done()

    run(main)


def test_waiter_cancel_unregisters() -> None:
    mach = make_machine()
    waiter = mach.when("A")

    waiter.cancel()
    mach.add("A")

    assert waiter.cancelled()
    assert mach.when("A") is not waiter


def test_waiter_cancel_after_resolve() -> None:
    mach = make_machine()
    waiter = mach.when("A")
    mach.add("A")

    waiter.cancel()

    assert not waiter.cancelled()
    assert waiter.done()


# Waiters with a context


def test_when_ctx_resolved_next_transition() -> None:
    mach = make_machine()
    ctx = FlagContext()
    waiter = mach.when("B", ctx=ctx)

    ctx.ended = True
    assert not waiter.done()

    mach.add("C")
    assert not waiter.done()

    mach.add("A")
    assert waiter.done()
    assert not mach.is_active("B")


def test_when_done_ctx_resolved_now() -> None:
    mach = make_machine()
    ctx = FlagContext()
    ctx.ended = True

    assert mach.when("B", ctx=ctx).done()


def test_when_state_ctx_ends() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add("A")
        ctx = mach.state_ctx("A")
        waiter = mach.when("B", ctx=ctx)

        asyncio.create_task(mutate_later(lambda: mach.remove("A")))
        await asyncio.wait_for(waiter, 5)

        assert ctx.done()
        assert not mach.is_active("B")

    run(main)


# State contexts


def test_state_ctx_same_while_valid() -> None:
    mach = make_machine()
    mach.add("A")

    first = mach.state_ctx("A")
    mach.add("B")
    second = mach.state_ctx("A")

    assert first is second
    assert not first.done()
    assert first.state == "A"
    assert first.tick == 1
    assert first.mach_id == "waits"


def test_state_ctx_done_on_remove() -> None:
    mach = make_machine()
    mach.add("A")
    ctx = mach.state_ctx("A")

    mach.remove("A")

    assert ctx.done()
    assert mach.state_ctx("A") is not ctx
    assert mach.state_ctx("A").tick == 2


def test_state_ctx_inactive_ends_on_add() -> None:
    mach = make_machine()
    ctx = mach.state_ctx("A")

    mach.add("A")

    assert ctx.done()


def test_state_ctx_multi_reentry_ends() -> None:
    mach = make_machine()
    mach.add("M")
    ctx = mach.state_ctx("M")

    mach.add("M")

    assert ctx.done()


def test_state_ctx_canceled_add_keeps() -> None:
    mach = make_machine()
    ctx = mach.state_ctx("C")

    mach.add("C")

    assert not ctx.done()


def test_state_ctx_done_callback() -> None:
    mach = make_machine()
    mach.add("A")
    ctx = mach.state_ctx("A")
    calls: list[am.StateContext] = []
    removed: list[am.StateContext] = []
    ctx.add_done_callback(calls.append)
    ctx.add_done_callback(removed.append)
    ctx.remove_done_callback(removed.append)

    mach.remove("A")
    mach.add("A")

    assert calls == [ctx]
    assert removed == []


def test_done_callback_after_end() -> None:
    mach = make_machine()
    ctx = mach.state_ctx("A")
    mach.add("A")
    calls: list[am.StateContext] = []

    ctx.add_done_callback(calls.append)

    assert calls == [ctx]


def test_state_ctx_wait_returns() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add("A")
        ctx = mach.state_ctx("A")

        asyncio.create_task(mutate_later(lambda: mach.remove("A")))
        await asyncio.wait_for(ctx.wait(), 5)

        assert ctx.done()

    run(main)


def test_state_ctx_repr() -> None:
    mach = make_machine(id="ctx")
    mach.add("A")
    ctx = mach.state_ctx("A")

    assert repr(ctx) == "<StateContext ctx A@1 valid>"
    mach.remove("A")
    assert repr(ctx) == "<StateContext ctx A@1 done>"


# Forked tasks


def test_fork_cancelled_when_ctx_ends() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add("A")
        started = asyncio.Event()

        async def work() -> None:
            started.set()
            await asyncio.sleep(30)

        task = mach.fork(mach.state_ctx("A"), work())
        await asyncio.wait_for(started.wait(), 5)
        mach.remove("A")
        assert task is not None
        done, _ = await asyncio.wait([task], timeout=5)

        assert done == {task}
        assert task.cancelled()
        assert not mach.is_err()

    run(main)


def test_fork_returns_result() -> None:
    async def main() -> None:
        mach = make_machine()

        async def work() -> int:
            return 42

        task = mach.fork(None, work())
        assert task is not None

        assert await asyncio.wait_for(task, 5) == 42

    run(main)


def test_fork_exception_adds_err() -> None:
    async def main() -> None:
        mach = make_machine()
        mach.add("A")

        async def work() -> None:
            raise ConnectionError("connection refused")

        mach.fork(mach.state_ctx("A"), work())
        await asyncio.wait_for(mach.when_err(), 5)

        assert isinstance(mach.err(), ConnectionError)

    run(main)


def test_fork_done_ctx_returns_none() -> None:
    async def main() -> None:
        mach = make_machine()
        ctx = mach.state_ctx("A")
        mach.add("A")
        ran: list[bool] = []

        async def work() -> None:
            ran.append(True)

        task = mach.fork(ctx, work())
        await asyncio.sleep(0)

        assert task is None
        assert ran == []

    run(main)

"""Tests of handler binding, dispatch, async final handlers, failures and timeouts."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

import asyncmachine as am

SCHEMA = {
    "A": am.State(),
    "B": am.State(),
    "C": am.State(),
    "M": am.State(multi=True),
}


def other_tasks() -> list[asyncio.Task[Any]]:
    """Return the tasks of the running loop, except the current one."""
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current]


# Binding and dispatch


def test_groups_called_in_binding_order() -> None:
    calls: list[str] = []

    class First:
        def AEnter(self, e: am.Event) -> None:
            calls.append("first:AEnter")

        def AState(self, e: am.Event) -> None:
            calls.append("first:AState")

    class Second:
        def AEnter(self, e: am.Event) -> None:
            calls.append("second:AEnter")

        def AState(self, e: am.Event) -> None:
            calls.append("second:AState")

    mach = am.Machine(SCHEMA, handlers=[First(), Second()])
    mach.add("A")

    assert calls == ["first:AEnter", "second:AEnter", "first:AState", "second:AState"]


def test_first_group_false_stops_second() -> None:
    calls: list[str] = []

    class First:
        def AEnter(self, e: am.Event) -> bool:
            calls.append("first")
            return False

    class Second:
        def AEnter(self, e: am.Event) -> bool:
            calls.append("second")
            return True

    mach = am.Machine(SCHEMA, handlers=[First(), Second()])

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert calls == ["first"]
    assert not mach.is_active("A")


def test_enter_none_accepts() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            return None

    mach = am.Machine(SCHEMA, handlers=Handlers())

    assert mach.add("A") is am.Result.EXECUTED


def test_handler_phases_order() -> None:
    calls: list[str] = []
    names = ["AExit", "BEnter", "AB", "AnyEnter", "AEnd", "BState", "AnyState"]

    def make_handler(name: str) -> Any:
        def handler(self: Any, e: am.Event) -> None:
            calls.append(name)

        return handler

    handlers_class = type("Handlers", (), {name: make_handler(name) for name in names})
    mach = am.Machine(SCHEMA, handlers=handlers_class())
    mach.add("A")
    calls.clear()

    mach.set("B")

    assert calls == names


def test_handlers_returns_group_ids() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            pass

    mach = am.Machine(SCHEMA)

    first = mach.bind_handlers(Handlers())
    second = mach.bind_handlers(Handlers())

    assert mach.handlers() == [first, second]
    assert first != second
    assert first.startswith("Handlers")


def test_bind_none_raises() -> None:
    mach = am.Machine(SCHEMA)

    with pytest.raises(TypeError):
        mach.bind_handlers(None)


def test_prefix_binding_strips_prefix() -> None:
    calls: list[str] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            calls.append(e.name)

        def BarState(self, e: am.Event) -> None:
            calls.append(e.name)

    mach = am.Machine({"FooA": am.State(), "Bar": am.State()})
    mach.bind_handlers(Handlers(), prefix="Foo")
    mach.add(["FooA", "Bar"])

    assert calls == ["FooAState"]


def test_detach_handlers_stops_calls() -> None:
    calls: list[str] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            calls.append("A")

    mach = am.Machine(SCHEMA)
    group_id = mach.bind_handlers(Handlers())

    mach.detach_handlers(group_id)
    mach.add("A")

    assert calls == []
    assert mach.handlers() == []


def test_detach_keeps_other_groups() -> None:
    calls: list[str] = []

    class First:
        def AState(self, e: am.Event) -> None:
            calls.append("first")

    class Second:
        def AState(self, e: am.Event) -> None:
            calls.append("second")

    mach = am.Machine(SCHEMA)
    first = mach.bind_handlers(First())
    mach.bind_handlers(Second())

    mach.detach_handlers(first)
    mach.add("A")

    assert calls == ["second"]


def test_detach_unknown_id_raises() -> None:
    mach = am.Machine(SCHEMA, id="detach")

    with pytest.raises(KeyError) as info:
        mach.detach_handlers("Missing-1")

    assert "Missing-1" in str(info.value)
    assert "detach" in str(info.value)


def test_instance_attribute_callables() -> None:
    calls: list[str] = []

    def record(e: am.Event) -> None:
        calls.append(e.name)

    handlers = SimpleNamespace(AEnter=record, AState=record)

    mach = am.Machine(SCHEMA, handlers=handlers)
    mach.add("A")

    assert calls == ["AEnter", "AState"]


def test_instance_callable_rejects() -> None:
    handlers = SimpleNamespace(AEnter=lambda e: False)

    mach = am.Machine(SCHEMA, handlers=handlers)

    assert mach.add("A") is am.Result.CANCELED


def test_event_properties() -> None:
    seen: list[am.Event] = []
    valid: list[bool] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            seen.append(e)
            valid.append(e.is_valid())

    mach = am.Machine(SCHEMA, id="events", handlers=Handlers())
    mach.add("A", {"k": 1})

    event = seen[0]
    assert event.name == "AState"
    assert event.machine is mach
    assert event.mach_id == "events"
    assert event.args == {"k": 1}
    assert event.transition.called_states() == ["A"]
    assert valid == [True]
    assert not event.is_valid()


def test_args_shared_between_handlers() -> None:
    seen: list[Any] = []

    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            e.args["from_enter"] = True

        def AState(self, e: am.Event) -> None:
            seen.append(e.args.get("from_enter"))

    mach = am.Machine(SCHEMA, handlers=Handlers())
    mach.add("A")

    assert seen == [True]


# Async handlers


def test_async_negotiation_handler_rejected() -> None:
    class Handlers:
        async def AEnter(self, e: am.Event) -> bool:
            return True

    mach = am.Machine(SCHEMA)

    with pytest.raises(TypeError) as info:
        mach.bind_handlers(Handlers())

    assert "AEnter" in str(info.value)
    assert mach.handlers() == []


@pytest.mark.parametrize("name", ["AExit", "AnyEnter", "AB", "AA"])
def test_async_negotiation_names_rejected(name: str) -> None:
    async def handler(self: Any, e: am.Event) -> bool:
        return True

    handlers_class = type("Handlers", (), {name: handler})
    mach = am.Machine(SCHEMA)

    with pytest.raises(TypeError):
        mach.bind_handlers(handlers_class())


def test_async_helper_methods_allowed() -> None:
    class Handlers:
        async def fetch_data(self) -> None:
            pass

        async def ZedEnter(self, e: am.Event) -> None:
            pass

        def AState(self, e: am.Event) -> None:
            pass

    mach = am.Machine(SCHEMA)

    group_id = mach.bind_handlers(Handlers())

    assert mach.handlers() == [group_id]


def test_prefix_async_negotiation_rejected() -> None:
    class Handlers:
        async def AEnter(self, e: am.Event) -> bool:
            return False

    mach = am.Machine({"FooA": am.State()})

    with pytest.raises(TypeError):
        mach.bind_handlers(Handlers(), prefix="Foo")


def test_async_state_handler_runs_task() -> None:
    calls: list[str] = []

    class Handlers:
        async def AState(self, e: am.Event) -> None:
            await asyncio.sleep(0)
            calls.append("done")

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())

        result = mach.add("A")
        calls.append("returned")
        await asyncio.wait_for(asyncio.gather(*other_tasks()), 5)

        assert result is am.Result.EXECUTED

    asyncio.run(main())

    assert calls == ["returned", "done"]


def test_async_state_cancelled_on_remove() -> None:
    cancelled = []

    class Handlers:
        async def AState(self, e: am.Event) -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(e.name)
                raise

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())
        mach.add("A")
        await asyncio.sleep(0)
        tasks = other_tasks()

        mach.remove("A")
        done, _ = await asyncio.wait(tasks, timeout=5)

        assert len(tasks) == 1
        assert done == set(tasks)
        assert tasks[0].cancelled()

    asyncio.run(main())

    assert cancelled == ["AState"]


def test_async_multi_cancelled_on_reentry() -> None:
    class Handlers:
        async def MState(self, e: am.Event) -> None:
            await asyncio.sleep(30)

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())
        mach.add("M")
        first = other_tasks()

        mach.add("M")
        done, _ = await asyncio.wait(first, timeout=5)
        second = [task for task in other_tasks() if task not in first]

        assert done == set(first)
        assert first[0].cancelled()
        assert len(second) == 1
        assert not second[0].done()
        mach.remove("M")

    asyncio.run(main())


def test_async_state_not_cancelled_by_other() -> None:
    class Handlers:
        async def AState(self, e: am.Event) -> None:
            await asyncio.sleep(30)

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())
        mach.add("A")
        tasks = other_tasks()

        mach.add("B")
        await asyncio.sleep(0)

        assert not tasks[0].done()
        mach.remove("A")

    asyncio.run(main())


def test_async_state_error_adds_exception() -> None:
    class Handlers:
        async def AState(self, e: am.Event) -> None:
            raise LookupError("not found in the async handler")

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())
        mach.add("A")

        await asyncio.wait_for(mach.when_err(), 5)

        assert isinstance(mach.err(), LookupError)
        assert mach.is_active("A")

    asyncio.run(main())


def test_async_without_loop_adds_exception() -> None:
    class Handlers:
        async def AState(self, e: am.Event) -> None:
            pass

    mach = am.Machine(SCHEMA, handlers=Handlers())

    mach.add("A")

    assert mach.is_err()
    assert isinstance(mach.err(), RuntimeError)
    assert "AState" in str(mach.err())


# Failures


def test_handler_exception_adds_exception() -> None:
    seen: list[dict[str, Any]] = []

    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            raise ValueError("invalid request")

        def ExceptionState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    mach = am.Machine(SCHEMA, handlers=Handlers())

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert mach.is_err()
    assert not mach.is_active("A")
    assert isinstance(mach.err(), ValueError)
    assert seen[0]["err"] is mach.err()
    assert "invalid request" in seen[0]["err_trace"]
    assert seen[0]["panic"]["handler"] == "AEnter"


def test_final_handler_exception_reverts() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            raise ValueError("failed in AState")

    mach = am.Machine(SCHEMA, handlers=Handlers())

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert not mach.is_active("A")
    assert mach.is_err()
    assert mach.tick("A") == 2


def test_exception_handler_failure_stops() -> None:
    calls: list[str] = []

    class Handlers:
        def ExceptionState(self, e: am.Event) -> None:
            calls.append("ExceptionState")
            raise RuntimeError("failed while handling an error")

    mach = am.Machine(SCHEMA, handlers=Handlers())

    mach.add_err(ValueError("first"))

    assert calls == ["ExceptionState"]
    assert isinstance(mach.err(), RuntimeError)
    assert mach.queue_len() == 0


def test_bind_readds_schema_error() -> None:
    calls: list[str] = []

    class Handlers:
        def ExceptionState(self, e: am.Event) -> None:
            calls.append(str(e.args["err"]))

    schema = {"A": am.State(require=["B"], remove=["B"]), "B": am.State()}
    mach = am.Machine(schema)

    mach.bind_handlers(Handlers())

    assert len(calls) == 1
    assert "conflict" in calls[0]


def test_catch_panics_false_propagates() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            raise ValueError("invalid request")

    mach = am.Machine(SCHEMA, handlers=Handlers(), catch_panics=False)

    with pytest.raises(ValueError):
        mach.add("A")

    assert not mach.is_err()
    assert mach.active_states() == []
    assert mach.transition() is None


def test_catch_panics_false_machine_works() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            raise ValueError("failed in AState")

    mach = am.Machine(SCHEMA, handlers=Handlers(), catch_panics=False)
    with pytest.raises(ValueError):
        mach.add("A")

    result = mach.add("B")

    assert result is am.Result.EXECUTED
    assert mach.is_active("B")
    assert mach.queue_len() == 0


def test_catch_panics_false_next_result() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.machine.add("B")
            raise ValueError("failed in AState")

        def BEnter(self, e: am.Event) -> bool:
            return False

    mach = am.Machine(SCHEMA, handlers=Handlers(), catch_panics=False)
    with pytest.raises(ValueError):
        mach.add("A")

    result = mach.add("C")

    assert mach.is_active("C")
    assert result is am.Result.EXECUTED


def test_failed_state_cancels_async_task() -> None:
    class AsyncHandlers:
        async def BState(self, e: am.Event) -> None:
            await asyncio.sleep(30)

    class FailingHandlers:
        def BState(self, e: am.Event) -> None:
            raise ValueError("failed in BState")

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=[AsyncHandlers(), FailingHandlers()])

        result = mach.add("B")
        await asyncio.sleep(0)
        tasks = other_tasks()

        assert result is am.Result.CANCELED
        assert not mach.is_active("B")
        assert mach.state_ctx("B").tick == mach.tick("B")
        assert all(task.done() for task in tasks)

    asyncio.run(main())


# Timeouts


def test_enter_timeout_cancels() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            time.sleep(0.15)

    mach = am.Machine(SCHEMA, handlers=Handlers(), handler_timeout=0.05)

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert not mach.is_active("A")
    assert not mach.is_err()


def test_timeout_in_internal_errors() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            time.sleep(0.15)

    mach = am.Machine(SCHEMA, id="slow", handlers=Handlers(), handler_timeout=0.05)

    mach.add("A")
    errors = mach.internal_errors()

    assert len(errors) == 1
    assert isinstance(errors[0], am.HandlerTimeoutError)
    assert isinstance(errors[0], TimeoutError)
    assert "AEnter" in str(errors[0])
    assert "slow" in str(errors[0])


def test_state_timeout_reverts() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            time.sleep(0.15)

    mach = am.Machine(SCHEMA, handlers=Handlers(), handler_timeout=0.05)

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert not mach.is_active("A")
    assert len(mach.internal_errors()) == 1


def test_timeout_none_disables_check() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            time.sleep(0.15)

    mach = am.Machine(SCHEMA, handlers=Handlers(), handler_timeout=None)

    assert mach.add("A") is am.Result.EXECUTED
    assert mach.internal_errors() == []


def test_deadline_adds_exception_backs_off() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            e.machine.add("C")
            time.sleep(0.15)

    mach = am.Machine(
        SCHEMA,
        handlers=Handlers(),
        handler_timeout=0.05,
        handler_deadline=0.1,
        handler_backoff=60,
    )

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert mach.is_err()
    assert isinstance(mach.err(), am.HandlerTimeoutError)
    assert not mach.is_active("C")
    assert mach.add("B") is am.Result.CANCELED
    assert mach.set("B") is am.Result.EXECUTED

"""Tests of export and import, disposal, schema changes and tracers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import asyncmachine as am

SCHEMA = {
    "Start": am.State(),
    "A": am.State(),
    "B": am.State(),
    "M": am.State(multi=True),
}


def make_pair(machine_id: str = "shared") -> tuple[am.Machine, am.Machine]:
    """Return two machines with the same id and schema."""
    return am.Machine(SCHEMA, id=machine_id), am.Machine(SCHEMA, id=machine_id)


def snapshot(mach: am.Machine) -> tuple[str, int, int, tuple[str, ...]]:
    """Return what an import must leave unchanged when it fails."""
    return mach.string_all(), mach.queue_tick(), mach.machine_tick(), mach.state_names()


# Export and import


def test_export_record_fields() -> None:
    mach = am.Machine(SCHEMA, id="exported")
    mach.add(["A", "M"])
    mach.add("M")

    record = mach.export()

    assert record["id"] == "exported"
    assert record["state_names"] == ["Start", "A", "B", "M", "Exception"]
    assert record["time"] == [0, 1, 0, 3, 0]
    assert record["queue_tick"] == 3
    assert record["machine_tick"] == 0


def test_export_is_json() -> None:
    mach = am.Machine(SCHEMA, id="json")
    mach.add("A")

    record = mach.export()

    assert json.loads(json.dumps(record)) == record


def test_import_round_trip() -> None:
    source, target = make_pair()
    source.add(["A", "M"])
    source.add("M")
    source.remove("A")
    target.add("B")
    queue_tick = target.queue_tick()

    target.import_(json.loads(json.dumps(source.export())))

    assert target.clock() == source.clock()
    assert target.active_states() == ["M"]
    assert str(target) == str(source)
    assert target.machine_tick() == 1
    assert target.queue_tick() == queue_tick


def test_import_increments_machine_tick() -> None:
    source, target = make_pair()
    record = source.export()
    record["machine_tick"] = 4

    target.import_(record)

    assert target.machine_tick() == 5
    assert target.export()["machine_tick"] == 5


def test_import_runs_no_handlers() -> None:
    calls: list[str] = []

    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            calls.append("AEnter")

        def AState(self, e: am.Event) -> None:
            calls.append("AState")

    source = am.Machine(SCHEMA, id="quiet")
    target = am.Machine(SCHEMA, id="quiet", handlers=Handlers())
    source.add("A")

    target.import_(source.export())

    assert calls == []
    assert target.is_active("A")


def test_import_then_mutate() -> None:
    source, target = make_pair()
    source.add("A")
    target.import_(source.export())

    target.add("B")
    target.remove("A")

    assert target.active_states() == ["B"]
    assert target.tick("A") == 2


def test_import_record_order_adopted() -> None:
    source = am.Machine(
        SCHEMA, id="order", state_order=["Exception", "M", "B", "A", "Start"]
    )
    target = am.Machine(SCHEMA, id="order")
    source.add(["A", "M"])

    target.import_(source.export())

    assert target.state_names() == ("Exception", "M", "B", "A", "Start")
    assert target.clock() == source.clock()


def test_import_other_id_raises() -> None:
    source = am.Machine(SCHEMA, id="first")
    target = am.Machine(SCHEMA, id="second")
    source.add("A")
    target.add("B")
    before = snapshot(target)

    with pytest.raises(ValueError) as info:
        target.import_(source.export())

    assert "'first'" in str(info.value)
    assert "'second'" in str(info.value)
    assert snapshot(target) == before


def test_import_state_count_raises() -> None:
    source = am.Machine({**SCHEMA, "Extra": am.State()}, id="count")
    target = am.Machine(SCHEMA, id="count")
    source.add("A")
    before = snapshot(target)

    with pytest.raises(ValueError) as info:
        target.import_(source.export())

    assert "6 states" in str(info.value)
    assert snapshot(target) == before


def test_import_unknown_names_raises() -> None:
    source = am.Machine(
        {
            "Start": am.State(),
            "A": am.State(),
            "B": am.State(),
            "Zed": am.State(multi=True),
        },
        id="names",
    )
    target = am.Machine(SCHEMA, id="names")
    source.add("Zed")
    target.add("A")
    before = snapshot(target)

    with pytest.raises(ValueError) as info:
        target.import_(source.export())

    assert "Zed" in str(info.value)
    assert snapshot(target) == before


@pytest.mark.parametrize("missing", ["id", "state_names", "time", "machine_tick"])
def test_import_missing_key_raises(missing: str) -> None:
    source, target = make_pair()
    record = source.export()
    del record[missing]
    before = snapshot(target)

    with pytest.raises(ValueError) as info:
        target.import_(record)

    assert missing in str(info.value)
    assert snapshot(target) == before


def test_import_ticks_length_raises() -> None:
    source, target = make_pair()
    record = source.export()
    record["time"] = record["time"][:-1]
    before = snapshot(target)

    with pytest.raises(ValueError):
        target.import_(record)

    assert snapshot(target) == before


def test_import_during_transition_raises() -> None:
    errors: list[BaseException] = []
    source, _ = make_pair()

    class Handlers:
        def AState(self, e: am.Event) -> None:
            try:
                e.machine.import_(source.export())
            except RuntimeError as err:
                errors.append(err)

    target = am.Machine(SCHEMA, id="shared", handlers=Handlers())
    target.add("A")

    assert len(errors) == 1
    assert target.is_active("A")


def test_import_adds_machine_restored() -> None:
    calls: list[int] = []
    schema = {**SCHEMA, "MachineRestored": am.State()}

    class Handlers:
        def MachineRestoredState(self, e: am.Event) -> None:
            calls.append(e.machine.machine_tick())

    source = am.Machine(schema, id="restored")
    target = am.Machine(schema, id="restored", handlers=Handlers())
    source.add("A")

    target.import_(source.export())

    assert calls == [1]
    assert target.is_active("A", "MachineRestored")


def test_import_updates_when_not() -> None:
    source, target = make_pair()
    source.add(["A", "B"])
    target.add("B")
    waiter = target.when_not(["A", "B"])

    target.import_(source.export())
    target.remove("B")

    assert target.is_active("A")
    assert not waiter.done()


def test_import_ends_changed_contexts() -> None:
    source, target = make_pair()
    source.add("A")
    ctx = target.state_ctx("A")
    waiter = target.when("A")

    target.import_(source.export())

    assert ctx.done()
    assert waiter.done()


# Disposal


def test_dispose_removes_start() -> None:
    calls: list[str] = []

    class Handlers:
        def StartEnd(self, e: am.Event) -> None:
            calls.append("StartEnd")

    mach = am.Machine(SCHEMA, handlers=Handlers())
    mach.add(["Start", "A"])

    mach.dispose()

    assert calls == ["StartEnd"]
    assert mach.is_disposed()


def test_dispose_resolves_waiters() -> None:
    mach = am.Machine(SCHEMA)
    waiters = [
        mach.when("A"),
        mach.when_not("Start"),
        mach.when_time(["M"], [9]),
        mach.when_args("A", {"k": 1}),
        mach.when_query(lambda clock: False),
        mach.when_disposed(),
    ]
    mach.add("Start")

    mach.dispose()

    assert [w.done() for w in waiters] == [True] * len(waiters)


def test_dispose_ends_contexts() -> None:
    mach = am.Machine(SCHEMA)
    mach.add("A")
    active_ctx = mach.state_ctx("A")
    inactive_ctx = mach.state_ctx("B")

    mach.dispose()

    assert active_ctx.done()
    assert inactive_ctx.done()
    assert mach.state_ctx("A").done()


def test_dispose_calls_callbacks() -> None:
    calls: list[str] = []
    mach = am.Machine(SCHEMA, id="disposed")

    def failing(machine_id: str) -> None:
        raise RuntimeError("callback failed")

    mach.on_dispose(calls.append)
    mach.on_dispose(failing)
    mach.on_dispose(lambda machine_id: calls.append("second:" + machine_id))
    mach.dispose()

    assert calls == ["disposed", "second:disposed"]


def test_dispose_cancels_mutations() -> None:
    mach = am.Machine(SCHEMA)
    mach.dispose()

    assert mach.add("A") is am.Result.CANCELED
    assert mach.remove("A") is am.Result.CANCELED
    assert mach.set("A") is am.Result.CANCELED
    assert mach.add_err(ValueError("late")) is am.Result.CANCELED
    assert mach.can_add("A") is am.Result.CANCELED


def test_dispose_empties_views() -> None:
    mach = am.Machine(SCHEMA)
    mach.add(["A", "M"])
    mach.add_err(ValueError("failed"))

    mach.dispose()

    assert str(mach) == ""
    assert mach.string_all() == ""
    assert mach.inspect() == ""
    assert mach.active_states() == []
    assert mach.time() == []
    assert mach.index("A") == -1
    assert not mach.has("A")
    assert not mach.is_active("A")
    assert not mach.is_err()


def test_dispose_empties_clock() -> None:
    mach = am.Machine(SCHEMA)
    mach.add("A")

    mach.dispose()

    assert mach.clock() == {}


def test_waits_after_dispose_resolved() -> None:
    mach = am.Machine(SCHEMA)
    mach.dispose()

    assert mach.when("A").done()
    assert mach.when_disposed().done()
    assert mach.when_queue(100).done()
    assert mach.state_ctx("A").done()


def test_dispose_twice_no_error() -> None:
    calls: list[str] = []
    mach = am.Machine(SCHEMA)
    mach.on_dispose(calls.append)

    mach.dispose()
    mach.dispose()

    assert len(calls) == 1


def test_dispose_from_handler_finishes() -> None:
    states_at_dispose: list[bool] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.machine.add("B")
            e.machine.dispose()
            states_at_dispose.append(e.machine.is_disposed())

    mach = am.Machine(SCHEMA, handlers=Handlers())
    mach.on_dispose(lambda machine_id: states_at_dispose.append(True))

    mach.add("A")

    assert states_at_dispose == [False, True]
    assert mach.is_disposed()


def test_dispose_cancels_handler_tasks() -> None:
    class Handlers:
        async def AState(self, e: am.Event) -> None:
            await asyncio.sleep(30)

    async def main() -> None:
        mach = am.Machine(SCHEMA, handlers=Handlers())
        mach.add("A")
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]

        mach.dispose()
        done, _ = await asyncio.wait(tasks, timeout=5)

        assert len(tasks) == 1
        assert done == set(tasks)
        assert tasks[0].cancelled()

    asyncio.run(main())


def test_dispose_awaited_waiter() -> None:
    async def main() -> None:
        mach = am.Machine(SCHEMA)
        waiter = mach.when_disposed()

        asyncio.get_running_loop().call_soon(mach.dispose)
        await asyncio.wait_for(waiter, 5)

        assert mach.is_disposed()

    asyncio.run(main())


# Schema changes and groups


def test_set_schema_keeps_ticks() -> None:
    mach = am.Machine(SCHEMA)
    mach.add(["A", "M"])
    schema = {**SCHEMA, "C": am.State(require=["A"])}

    mach.set_schema(schema, ["Start", "A", "B", "M", "C", "Exception"])
    mach.add("C")

    assert mach.state_names() == ("Start", "A", "B", "M", "C", "Exception")
    assert mach.clock() == {"Start": 0, "A": 1, "B": 0, "M": 1, "C": 1, "Exception": 0}


def test_set_schema_smaller_raises() -> None:
    mach = am.Machine(SCHEMA)

    with pytest.raises(am.SchemaError):
        mach.set_schema({"A": am.State()}, ["A", "Exception"])

    assert mach.state_names() == ("Start", "A", "B", "M", "Exception")


def test_set_groups_round_trip() -> None:
    mach = am.Machine(SCHEMA)

    mach.set_groups({"work": ["A", "B"], "boot": ["Start"]}, order=["boot", "work"])

    assert mach.groups() == ({"work": ["A", "B"], "boot": ["Start"]}, ["boot", "work"])


def test_set_groups_unknown_raises() -> None:
    mach = am.Machine(SCHEMA)

    with pytest.raises(am.StateError):
        mach.set_groups({"work": ["A", "Zed"]})


# Tracers


class RecordingTracer(am.Tracer):
    """A tracer that records what each hook received."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def machine_init(self, mach: am.Machine) -> None:
        self.events.append(("init", mach.id))

    def transition_start(self, tx: am.Transition) -> None:
        self.events.append(
            ("start", tx.called_states(), tx.target_states(), tx.before_states())
        )

    def transition_end(self, tx: am.Transition, result: Any) -> None:
        self.events.append(("end", tx.clock_before, tx.clock_after, result))

    def queue_end(self, mach: am.Machine) -> None:
        self.events.append(("queue_end", mach.id))

    def handlers_bound(self, mach: am.Machine, group_id: str) -> None:
        self.events.append(("bound", group_id))

    def schema_change(self, mach: am.Machine, old_schema: dict[str, Any]) -> None:
        self.events.append(("schema", sorted(old_schema)))

    def machine_dispose(self, mach_id: str) -> None:
        self.events.append(("dispose", mach_id))


def test_tracer_sees_transition() -> None:
    tracer = RecordingTracer()
    mach = am.Machine(SCHEMA, id="traced", tracers=[tracer])
    mach.add("A")
    tracer.events.clear()

    mach.add("B")

    start, end, queue_end = tracer.events
    assert start == ("start", ["B"], ["A", "B"], ["A"])
    assert end[0] == "end"
    assert end[1] == {"Start": 0, "A": 1, "B": 0, "M": 0, "Exception": 0}
    assert end[2] == {"Start": 0, "A": 1, "B": 1, "M": 0, "Exception": 0}
    assert end[3] is am.Result.EXECUTED
    assert queue_end == ("queue_end", "traced")


def test_kept_transitions_keep_their_clocks() -> None:
    class KeepingTracer(am.Tracer):
        def __init__(self) -> None:
            self.transitions: list[am.Transition] = []

        def transition_end(self, tx: am.Transition, result: Any) -> None:
            self.transitions.append(tx)

    tracer = KeepingTracer()
    mach = am.Machine(SCHEMA, tracers=[tracer])
    mach.add("A")
    mach.add("M")
    mach.add("M")
    mach.sync_clock(dict(mach.clock(), B=3))

    times = [tx.time_after for tx in tracer.transitions]
    assert [tx.clock_after["M"] for tx in tracer.transitions] == [0, 1, 3, 3]
    assert [tx.clock_after["B"] for tx in tracer.transitions] == [0, 0, 0, 3]
    assert times[0] != times[1]
    assert tracer.transitions[0].clock_after["A"] == 1


def test_tracer_hooks_found_every_way() -> None:
    calls: list[str] = []

    class Subclass(am.Tracer):
        def transition_start(self, tx: am.Transition) -> None:
            calls.append("subclass start")

    class DuckTyped:
        def machine_init(self, mach: am.Machine) -> None:
            pass

        def transition_start(self, tx: am.Transition) -> None:
            calls.append("duck start")

        def transition_end(self, tx: am.Transition, result: Any) -> None:
            pass

        def queue_end(self, mach: am.Machine) -> None:
            calls.append("duck queue_end")

    on_instance = am.Tracer()
    on_instance.queue_end = lambda mach: calls.append("instance queue_end")  # type: ignore[method-assign]
    duck = DuckTyped()
    mach = am.Machine(SCHEMA, tracers=[Subclass(), duck, on_instance])

    mach.add("A")
    assert sorted(calls) == [
        "duck queue_end",
        "duck start",
        "instance queue_end",
        "subclass start",
    ]

    calls.clear()
    mach.remove_tracer(duck)  # type: ignore[arg-type]
    mach.add("B")
    assert sorted(calls) == ["instance queue_end", "subclass start"]


def test_tracer_sees_canceled() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> bool:
            return False

    tracer = RecordingTracer()
    mach = am.Machine(SCHEMA, tracers=[tracer], handlers=Handlers())
    tracer.events.clear()

    mach.add("A")

    end = tracer.events[1]
    assert end[3] is am.Result.CANCELED
    assert end[1] == end[2]


def test_tracer_queue_end_once() -> None:
    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.machine.add("B")
            e.machine.add("M")

    tracer = RecordingTracer()
    mach = am.Machine(SCHEMA, tracers=[tracer], handlers=Handlers())

    mach.add("A")

    kinds = [event[0] for event in tracer.events]
    assert kinds.count("start") == 3
    assert kinds.count("end") == 3
    assert kinds.count("queue_end") == 1
    assert kinds[-1] == "queue_end"


def test_tracer_lifecycle_hooks() -> None:
    class Handlers:
        pass

    tracer = RecordingTracer()
    mach = am.Machine(SCHEMA, id="life")
    mach.add_tracer(tracer)
    group_id = mach.bind_handlers(Handlers())
    mach.set_schema({**SCHEMA, "C": am.State()}, [*SCHEMA, "C", "Exception"])
    mach.dispose()

    assert tracer.events[0] == ("init", "life")
    assert ("bound", group_id) in tracer.events
    assert ("schema", ["A", "B", "Exception", "M", "Start"]) in tracer.events
    assert tracer.events[-1] == ("dispose", "life")


def test_remove_tracer_stops_events() -> None:
    tracer = RecordingTracer()
    mach = am.Machine(SCHEMA, tracers=[tracer])
    assert mach.tracers() == [tracer]

    mach.remove_tracer(tracer)
    tracer.events.clear()
    mach.add("A")

    assert tracer.events == []
    assert mach.tracers() == []

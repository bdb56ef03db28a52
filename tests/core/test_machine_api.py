"""Tests of mutations, their results and the read-only views of a machine."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

import asyncmachine as am


def make_machine(**kwargs: Any) -> am.Machine:
    """Return a machine with plain states A, B, C and a Multi state M."""
    schema = {
        "A": am.State(),
        "B": am.State(),
        "C": am.State(),
        "M": am.State(multi=True),
    }
    kwargs.setdefault("id", "api")
    return am.Machine(schema, **kwargs)


# Results


def test_result_executed_properties() -> None:
    result = am.Result.EXECUTED

    assert result == 0
    assert result.executed
    assert not result.canceled
    assert not result.queued


def test_result_canceled_properties() -> None:
    result = am.Result.CANCELED

    assert result == 1
    assert result.canceled
    assert not result.executed
    assert not result.queued


def test_result_queued_properties() -> None:
    result = am.Result(7)

    assert result.queued
    assert not result.executed
    assert not result.canceled


@pytest.mark.parametrize(
    ("result", "text", "shown"),
    [
        (am.Result.EXECUTED, "executed", "Result.EXECUTED"),
        (am.Result.CANCELED, "canceled", "Result.CANCELED"),
        (am.Result(4), "queued:4", "Result.QUEUED(4)"),
    ],
)
def test_result_str_and_repr(result: am.Result, text: str, shown: str) -> None:
    assert str(result) == text
    assert repr(result) == shown


def test_add_returns_executed() -> None:
    mach = make_machine()

    result = mach.add("A")

    assert result is am.Result.EXECUTED
    assert mach.is_active("A")


def test_add_relation_canceled() -> None:
    mach = am.Machine({"A": am.State(require=["B"]), "B": am.State()})

    result = mach.add("A")

    assert result is am.Result.CANCELED
    assert mach.active_states() == []


def test_add_from_handler_queued() -> None:
    results: list[am.Result] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            results.append(e.machine.add("B"))
            results.append(e.machine.add("C"))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert results[0].queued
    assert results[1].queued
    assert int(results[1]) == int(results[0]) + 1
    assert mach.is_active("A", "B", "C")


def test_queued_result_is_queue_tick() -> None:
    results: list[am.Result] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            results.append(e.machine.add("B"))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert int(results[0]) == mach.queue_tick()


# Argument errors


def test_unknown_state_raises_state_error() -> None:
    mach = make_machine(id="unknown-states")

    with pytest.raises(am.StateError) as info:
        mach.add(["A", "Zed", "Yon"])

    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "Zed" in message
    assert "Yon" in message
    assert "'unknown-states'" in message
    assert "Exception" in message
    assert "'M'" in message


@pytest.mark.parametrize("method", ["add", "remove", "set", "toggle"])
def test_unknown_state_keeps_machine(method: str) -> None:
    mach = make_machine()
    mach.add("A")
    before_string = mach.string_all()
    before_queue_tick = mach.queue_tick()

    with pytest.raises(am.StateError):
        getattr(mach, method)(["B", "Zed"])

    assert mach.string_all() == before_string
    assert mach.queue_tick() == before_queue_tick


@pytest.mark.parametrize(
    "check",
    ["can_add", "can_remove", "is_inactive", "tick", "when", "state_ctx"],
)
def test_unknown_state_other_calls(check: str) -> None:
    mach = make_machine()

    with pytest.raises(am.StateError):
        getattr(mach, check)("Zed")


@pytest.mark.parametrize(
    "states",
    [1, [1], ["A", None], None, b"A", {"A": 1}],
    ids=["int", "int-list", "none-in-list", "none", "bytes", "dict"],
)
def test_non_str_state_type_error(states: Any) -> None:
    mach = make_machine()

    with pytest.raises(TypeError):
        mach.add(states)


@pytest.mark.parametrize("args", [[1], "k=v", 5], ids=["list", "str", "int"])
def test_non_mapping_args_type_error(args: Any) -> None:
    mach = make_machine()

    with pytest.raises(TypeError) as info:
        mach.add("A", args)

    assert "args" in str(info.value)
    assert mach.active_states() == []


def test_states_given_as_generator() -> None:
    mach = make_machine()

    mach.add(name for name in ["A", "B"])

    assert mach.active_states() == ["A", "B"]


def test_args_mapping_copied_to_dict() -> None:
    seen: list[dict[str, Any]] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            seen.append(e.args)

    mach = make_machine(handlers=Handlers())
    mach.add("A", MappingProxyType({"key": "value"}))

    assert seen == [{"key": "value"}]
    assert type(seen[0]) is dict


# Mutations


def test_remove_deactivates() -> None:
    mach = make_machine()
    mach.add(["A", "B"])

    result = mach.remove("A")

    assert result is am.Result.EXECUTED
    assert mach.active_states() == ["B"]


def test_remove_inactive_executed() -> None:
    mach = make_machine()

    result = mach.remove("A")

    assert result is am.Result.EXECUTED
    assert mach.tick("A") == 0


def test_set_replaces_active() -> None:
    mach = make_machine()
    mach.add(["A", "B"])

    result = mach.set(["B", "C"])

    assert result is am.Result.EXECUTED
    assert mach.active_states() == ["B", "C"]
    assert mach.tick("A") == 2
    assert mach.tick("B") == 1


def test_toggle_adds_inactive() -> None:
    mach = make_machine()

    mach.toggle("A")

    assert mach.is_active("A")


def test_toggle_removes_active() -> None:
    mach = make_machine()
    mach.add("A")

    mach.toggle("A")

    assert not mach.is_active("A")
    assert mach.tick("A") == 2


def test_toggle_partial_adds_all() -> None:
    mach = make_machine()
    mach.add("A")

    mach.toggle(["A", "B"])

    assert mach.is_active("A", "B")
    assert mach.tick("A") == 1


def test_multi_reenters_ticks_two() -> None:
    mach = make_machine()
    mach.add("M")

    mach.add("M")

    assert mach.tick("M") == 3


def test_add_err_stores_error() -> None:
    mach = make_machine()
    err = ValueError("failed to connect")

    result = mach.add_err(err)

    assert result is am.Result.EXECUTED
    assert mach.err() is err
    assert mach.is_err()


def test_add_err_args_in_handler() -> None:
    seen: list[dict[str, Any]] = []

    class Handlers:
        def ExceptionState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    mach = make_machine(handlers=Handlers())
    err = ValueError("failed")
    mach.add_err(err, {"request": 5})

    assert seen[0]["err"] is err
    assert seen[0]["request"] == 5


def test_add_err_raised_has_trace() -> None:
    seen: list[dict[str, Any]] = []

    class Handlers:
        def ExceptionState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    mach = make_machine(handlers=Handlers())
    try:
        raise KeyError("missing key")
    except KeyError as err:
        mach.add_err(err)

    assert "KeyError" in seen[0]["err_trace"]


def test_add_err_none_canceled() -> None:
    mach = make_machine()

    result = mach.add_err(None)

    assert result is am.Result.CANCELED
    assert not mach.is_err()


def test_add_err_non_exception_raises() -> None:
    mach = make_machine()

    with pytest.raises(TypeError):
        mach.add_err("failed")  # type: ignore[arg-type]


def test_add_err_state_adds_both() -> None:
    seen: list[dict[str, Any]] = []

    class Handlers:
        def BState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    mach = make_machine(handlers=Handlers())
    err = OSError("disk full")

    result = mach.add_err_state("B", err)

    assert result is am.Result.EXECUTED
    assert mach.is_active("B", "Exception")
    assert mach.err() is err
    assert seen[0]["err"] is err


def test_add_err_state_unknown_raises() -> None:
    mach = make_machine()

    with pytest.raises(am.StateError):
        mach.add_err_state("Zed", ValueError("failed"))


def test_can_add_accepted_no_change() -> None:
    mach = make_machine()
    before = mach.clock()

    result = mach.can_add("A")

    assert result is am.Result.EXECUTED
    assert mach.clock() == before
    assert mach.active_states() == []


def test_can_add_rejected_by_handler() -> None:
    class Handlers:
        def AEnter(self, e: am.Event) -> bool:
            return False

    mach = make_machine(handlers=Handlers())

    assert mach.can_add("A") is am.Result.CANCELED
    assert mach.can_add("B") is am.Result.EXECUTED


def test_can_add_rejected_by_relation() -> None:
    mach = am.Machine({"A": am.State(require=["B"]), "B": am.State()})

    assert mach.can_add("A") is am.Result.CANCELED


def test_can_remove_checks_exit() -> None:
    class Handlers:
        def AExit(self, e: am.Event) -> bool:
            return False

    mach = make_machine(handlers=Handlers())
    mach.add(["A", "B"])
    before = mach.clock()

    assert mach.can_remove("A") is am.Result.CANCELED
    assert mach.can_remove("B") is am.Result.EXECUTED
    assert mach.clock() == before


def test_can_add_in_handler_queued() -> None:
    results: list[am.Result] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            results.append(e.machine.can_add("B"))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert results == [am.Result(2)]
    assert results[0].queued
    assert not mach.is_active("B")
    assert mach.queue_tick() == 2


def test_check_transition_is_check() -> None:
    checks: list[bool] = []

    class Handlers:
        def AEnter(self, e: am.Event) -> None:
            checks.append(e.transition.is_check)

    mach = make_machine(handlers=Handlers())
    mach.can_add("A")
    mach.add("A")

    assert checks == [True, False]


def test_event_source_records_machine() -> None:
    sources: list[am.Source | None] = []
    handler_tx: list[str] = []

    class SourceHandlers:
        def AState(self, e: am.Event) -> None:
            handler_tx.append(e.transition.id)
            target.add("X", event=e)

    class TargetHandlers:
        def XState(self, e: am.Event) -> None:
            sources.append(e.transition.mutation.source)

    target = am.Machine({"X": am.State()}, id="target", handlers=TargetHandlers())
    source = am.Machine({"A": am.State()}, id="source", handlers=SourceHandlers())
    source.add("A")

    assert sources[0] is not None
    assert sources[0].mach_id == "source"
    assert sources[0].tx_id == handler_tx[0]
    assert sources[0].mach_time == 0


def test_mutation_without_event_no_source() -> None:
    sources: list[am.Source | None] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            sources.append(e.transition.mutation.source)

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert sources == [None]


def test_queue_limit_cancels_extra() -> None:
    results: list[am.Result] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            for i in range(5):
                results.append(e.machine.add("M", {"i": i}))

    mach = make_machine(handlers=Handlers(), queue_limit=3)
    mach.add("A")

    assert [r.queued for r in results] == [True, True, True, False, False]
    assert results[3] is am.Result.CANCELED
    assert results[4] is am.Result.CANCELED
    assert mach.tick("M") == 5


def test_duplicate_queued_add_skipped() -> None:
    results: list[am.Result] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            results.append(e.machine.add("B"))
            results.append(e.machine.add("B"))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert results[0].queued
    assert results[1] is am.Result.EXECUTED
    assert mach.queue_tick() == 3


# Views


def test_is_active_all_states() -> None:
    mach = make_machine()
    mach.add(["A", "B"])

    assert mach.is_active("A")
    assert mach.is_active("A", "B")
    assert mach.is_active(["A", "B"])
    assert not mach.is_active("A", "C")
    assert mach.is_active()


def test_is_active_unknown_false() -> None:
    mach = make_machine()

    assert not mach.is_active("Zed")


def test_is_inactive_none_active() -> None:
    mach = make_machine()
    mach.add("A")

    assert mach.is_inactive("B", "C")
    assert mach.is_inactive(["B", "C"])
    assert not mach.is_inactive("A", "B")


def test_any_active_groups() -> None:
    mach = make_machine()
    mach.add(["A", "B"])

    assert mach.any_active("C", ["A", "B"])
    assert mach.any_active("A")
    assert not mach.any_active("C", ["A", "C"])
    assert not mach.any_active()


def test_has_known_states() -> None:
    mach = make_machine()

    assert mach.has("A", "Exception")
    assert mach.has(["A", "B"])
    assert not mach.has("A", "Zed")


def test_switch_first_active() -> None:
    mach = make_machine()
    mach.add(["B", "C"])

    assert mach.switch("A", "C", "B") == "C"
    assert mach.switch(["A", "B"], "C") == "B"
    assert mach.switch("A", "M") is None


def test_will_be_queued_add() -> None:
    seen: list[tuple[bool, bool, bool]] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            e.machine.add(["B", "C"])
            e.machine.remove("A")
            seen.append(
                (
                    e.machine.will_be("B"),
                    e.machine.will_be("M"),
                    e.machine.will_be_removed("A"),
                )
            )

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert seen == [(True, False, True)]
    assert not mach.will_be("B")


def test_is_queued_filters() -> None:
    found: list[tuple[bool, int, int]] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            mach = e.machine
            mach.add("B")
            mach.add(["C", "M"], {"k": 1})
            add = am.MutationType.ADD
            found.append(mach.is_queued(add, ["C"]))
            found.append(mach.is_queued(add, ["C"], without_args=True))
            found.append(mach.is_queued(add, ["C"], strict=True))
            found.append(mach.is_queued(add, ["B"], position="last"))
            found.append(mach.is_queued(am.MutationType.REMOVE, ["B"]))

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert found[0] == (True, 1, 4)
    assert found[1] == (False, -1, 0)
    assert found[2] == (False, -1, 0)
    assert found[3] == (False, -1, 0)
    assert found[4] == (False, -1, 0)


def test_active_states_order() -> None:
    mach = make_machine()
    mach.add("C")
    mach.add("A")

    assert mach.active_states(["C", "A", "B"]) == ["C", "A"]
    assert set(mach.active_states()) == {"A", "C"}


def test_active_states_returns_copy() -> None:
    mach = make_machine()
    mach.add("A")

    mach.active_states().append("B")

    assert mach.active_states() == ["A"]


def test_tick_time_clock_views() -> None:
    mach = make_machine()
    mach.add(["A", "M"])
    mach.add("M")
    mach.remove("A")

    assert mach.tick("A") == 2
    assert mach.tick("M") == 3
    assert mach.time() == [2, 0, 0, 3, 0]
    assert mach.time(["M", "A"]) == [3, 2]
    assert mach.clock() == {"A": 2, "B": 0, "C": 0, "M": 3, "Exception": 0}
    assert mach.clock(["M"]) == {"M": 3}


def test_index_and_state_names() -> None:
    mach = make_machine()

    assert mach.state_names() == ("A", "B", "C", "M", "Exception")
    assert mach.index("C") == 2
    assert mach.index("Zed") == -1


def test_str_lists_active_ticks() -> None:
    mach = make_machine()
    mach.add(["B", "M"])
    mach.add("M")

    assert str(mach) == "(B:1 M:3)"


def test_string_all_lists_inactive() -> None:
    mach = make_machine()
    mach.add("B")
    mach.add("A")
    mach.remove("A")

    assert mach.string_all() == "(B:1) [A:2 C:0 M:0 Exception:0]"


def test_repr_names_id() -> None:
    mach = make_machine(id="shown")
    mach.add("A")

    assert repr(mach) == "<Machine shown (A:1)>"


def test_inspect_lists_relations() -> None:
    schema = {
        "A": am.State(multi=True, add=["B"], require=["C"]),
        "B": am.State(),
        "C": am.State(),
    }
    mach = am.Machine(schema)
    mach.add("C")

    text = mach.inspect(["A", "C"])

    assert text.splitlines() == [
        "0 A",
        "    |Tick     0",
        "    |Multi    true",
        "    |Add      B",
        "    |Require  C",
        "1 C",
        "    |Tick     1",
    ]


def test_schema_view_is_copy() -> None:
    mach = make_machine()

    schema = mach.schema()
    schema["A"] = am.State(multi=True)

    assert mach.schema()["A"] == am.State()
    assert mach.schema()["Exception"] == am.State(multi=True)


def test_queue_views_idle() -> None:
    mach = make_machine()
    mach.add("A")

    assert mach.queue_len() == 0
    assert mach.queue() == []
    assert mach.transition() is None
    assert mach.queue_tick() == 2
    assert mach.machine_tick() == 0


def test_transition_view_in_handler() -> None:
    seen: list[am.Transition | None] = []

    class Handlers:
        def AState(self, e: am.Event) -> None:
            seen.append(e.machine.transition())

    mach = make_machine(handlers=Handlers())
    mach.add("A")

    assert seen[0] is not None
    assert seen[0].called_states() == ["A"]
    assert seen[0].type is am.MutationType.ADD


def test_identity_properties() -> None:
    mach = make_machine(id="child", parent_id="parent", tags=["x", "y"])

    assert mach.id == "child"
    assert mach.parent_id == "parent"
    assert mach.tags == ("x", "y")


def test_random_ids_differ() -> None:
    schema = {"A": am.State()}

    first = am.Machine(schema)
    second = am.Machine(schema)

    assert first.id != second.id

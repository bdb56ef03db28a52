"""Tests of state definitions, schema helpers, StatesBase and schema validation."""

from __future__ import annotations

from typing import ClassVar

import pytest

import asyncmachine as am

# State construction


@pytest.mark.parametrize(
    "value",
    [["A", "B"], ("A", "B")],
    ids=["list", "tuple"],
)
def test_state_relation_sequences(value: object) -> None:
    state = am.State(add=value, require=value, remove=value, after=value)

    assert state.add == ("A", "B")
    assert state.require == ("A", "B")
    assert state.remove == ("A", "B")
    assert state.after == ("A", "B")


def test_state_single_name_string() -> None:
    state = am.State(add="Foo")

    assert state.add == ("Foo",)


def test_state_defaults_empty() -> None:
    state = am.State()

    assert state.auto is False
    assert state.multi is False
    assert state.require == ()
    assert state.add == ()
    assert state.remove == ()
    assert state.after == ()
    assert state.tags == ()


def test_state_flags_coerced_to_bool() -> None:
    state = am.State(auto=1, multi="yes")

    assert state.auto is True
    assert state.multi is True


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("add", 5, "5"),
        ("remove", [1], "1"),
        ("require", ["A", None], "None"),
        ("after", 3.5, "3.5"),
        ("tags", [b"x"], "b'x'"),
    ],
)
def test_state_bad_type_names_value(field: str, value: object, shown: str) -> None:
    with pytest.raises(TypeError) as info:
        am.State(**{field: value})

    assert shown in str(info.value)
    assert f"State.{field}" in str(info.value)


def test_state_is_immutable() -> None:
    state = am.State(add=["A"])

    with pytest.raises(AttributeError):
        state.add = ("B",)  # type: ignore[misc]


def test_state_to_dict_set_fields() -> None:
    state = am.State(multi=True, add=("A",), remove=["B", "C"])

    assert state.to_dict() == {"multi": True, "add": ["A"], "remove": ["B", "C"]}


def test_state_to_dict_empty() -> None:
    assert am.State().to_dict() == {}


def test_state_from_dict_round_trip() -> None:
    state = am.State(auto=True, require=["A"], after=["B"], tags=["t"])

    assert am.State.from_dict(state.to_dict()) == state


def test_state_from_dict_unknown_field() -> None:
    with pytest.raises(am.SchemaError) as info:
        am.State.from_dict({"add": ["A"], "adds": ["B"]})

    assert "adds" in str(info.value)


def test_state_repr_set_fields() -> None:
    state = am.State(auto=True, add=["A", "B"])

    assert repr(state) == "State(auto=True, add=['A', 'B'])"


def test_state_repr_empty() -> None:
    assert repr(am.State()) == "State()"


# Schema helpers


def test_merge_schemas_replaces_whole_state() -> None:
    first = {"A": am.State(add=["B"], multi=True), "B": am.State()}
    second = {"A": am.State(remove=["B"])}

    merged = am.merge_schemas(first, second)

    assert merged["A"] == am.State(remove=["B"])
    assert merged["B"] == am.State()


def test_merge_schemas_later_order() -> None:
    merged = am.merge_schemas({"A": am.State(), "B": am.State()}, {"A": am.State()})

    assert list(merged) == ["B", "A"]


def test_merge_schemas_accepts_dicts() -> None:
    merged = am.merge_schemas({"A": {"add": ["B"]}, "B": {}})

    assert merged["A"] == am.State(add=["B"])
    assert merged["B"] == am.State()


def test_merge_schemas_rejects_bad_entry() -> None:
    with pytest.raises(am.SchemaError):
        am.merge_schemas({"A": 5})


def test_extend_state_unions_relations() -> None:
    base = am.State(add=["A", "B"], remove=["C"], multi=True)
    overlay = am.State(add=["B", "D"], require=["E"], auto=True)

    extended = am.extend_state(base, overlay)

    assert extended.add == ("A", "B", "D")
    assert extended.remove == ("C",)
    assert extended.require == ("E",)
    assert extended.auto is True
    assert extended.multi is True


def test_extend_state_never_turns_off() -> None:
    extended = am.extend_state(am.State(auto=True), am.State(auto=False))

    assert extended.auto is True


def test_set_state_replaces_relations() -> None:
    base = am.State(add=["A"], remove=["B"], multi=True)

    changed = am.set_state(base, {"add": ["C"]})

    assert changed.add == ("C",)
    assert changed.remove == ("B",)
    assert changed.multi is True


def test_set_state_changes_flags() -> None:
    changed = am.set_state(am.State(multi=True), {}, auto=True, multi=False)

    assert changed.auto is True
    assert changed.multi is False


def test_set_state_rejects_non_relation() -> None:
    with pytest.raises(am.SchemaError) as info:
        am.set_state(am.State(), {"multi": ["A"]})

    assert "'multi'" in str(info.value)


# StatesBase


class BaseStates(am.StatesBase):
    Start: str
    Ready: str


class ChildStates(BaseStates):
    Connected: str
    Ready: str


def test_states_base_names_as_attributes() -> None:
    assert BaseStates.Start == "Start"
    assert BaseStates.Ready == "Ready"
    assert BaseStates.Exception == "Exception"


def test_states_base_names_order() -> None:
    assert BaseStates.names() == ("Exception", "Start", "Ready")


def test_states_base_parents_first() -> None:
    assert ChildStates.names() == ("Exception", "Start", "Ready", "Connected")
    assert ChildStates.Connected == "Connected"
    assert ChildStates.Start == "Start"


def test_states_base_groups() -> None:
    groups = ChildStates.groups()

    assert groups["self"] == ("Connected", "Ready")
    assert groups["BaseStates"] == ("Start", "Ready")


def test_states_base_groups_copy() -> None:
    ChildStates.groups()["self"] = ()

    assert ChildStates.groups()["self"] == ("Connected", "Ready")


def test_states_base_ignores_non_str() -> None:
    class ConfiguredStates(am.StatesBase):
        Start: str
        retries: ClassVar[int] = 3

    assert ConfiguredStates.names() == ("Exception", "Start")
    assert ConfiguredStates.retries == 3


def test_states_base_names_machine() -> None:
    schema = {name: am.State() for name in BaseStates.names()}

    mach = am.Machine(schema, id="states-base")

    assert mach.state_names() == ("Exception", "Start", "Ready")


# Validation at construction


@pytest.mark.parametrize("relation", ["require", "add", "remove", "after"])
def test_strict_unknown_target_raises(relation: str) -> None:
    schema = {"Foo": am.State(**{relation: ["Missing"]}), "Bar": am.State()}

    with pytest.raises(am.SchemaError) as info:
        am.Machine(schema)

    message = str(info.value)
    assert "'Foo'" in message
    assert f"'{relation}'" in message
    assert "'Missing'" in message


def test_strict_exception_target_accepted() -> None:
    mach = am.Machine({"Foo": am.State(remove=["Exception"])}, id="exc-target")

    assert mach.state_names() == ("Foo", "Exception")


def test_declared_exception_remove_works() -> None:
    schema = {"Foo": am.State(remove=["Exception"]), "Exception": am.State(multi=True)}
    mach = am.Machine(schema)
    mach.add_err(ValueError("failed"))

    mach.add("Foo")

    assert mach.active_states() == ["Foo"]


@pytest.mark.xfail(
    strict=True,
    reason="kept as in asyncmachine-go: a relation to the implicit Exception "
    "state is dropped by sanitising, "
    "which runs before Exception is added (asyncmachine-go does the same)",
)
def test_implicit_exception_remove_works() -> None:
    mach = am.Machine({"Foo": am.State(remove=["Exception"])})
    mach.add_err(ValueError("failed"))

    mach.add("Foo")

    assert mach.schema()["Foo"].remove == ("Exception",)
    assert mach.active_states() == ["Foo"]


@pytest.mark.parametrize("relation", ["add", "remove", "after"])
def test_non_strict_drops_unknown(relation: str) -> None:
    schema = {"Foo": am.State(**{relation: ["Missing", "Bar"]}), "Bar": am.State()}

    mach = am.Machine(schema, strict=False)

    assert getattr(mach.schema()["Foo"], relation) == ("Bar",)


def test_non_strict_add_unknown_works() -> None:
    mach = am.Machine({"Foo": am.State(add=["Missing"])}, strict=False)

    result = mach.add("Foo")

    assert result is am.Result.EXECUTED
    assert mach.active_states() == ["Foo"]


@pytest.mark.xfail(
    strict=True,
    reason="kept as in asyncmachine-go: strict=False keeps an unknown Require "
    "target, so the state never activates",
)
def test_non_strict_drops_unknown_require() -> None:
    mach = am.Machine({"Foo": am.State(require=["Missing"])}, strict=False)

    assert mach.schema()["Foo"].require == ()
    assert mach.add("Foo") is am.Result.EXECUTED


def test_require_remove_conflict_starts_err() -> None:
    schema = {"Foo": am.State(require=["Bar"], remove=["Bar"]), "Bar": am.State()}

    mach = am.Machine(schema, id="conflict")

    assert mach.is_err()
    assert mach.active_states() == ["Exception"]
    assert isinstance(mach.err(), am.SchemaError)
    assert "conflict" in str(mach.err())
    assert "Foo" in str(mach.err())


def test_add_wins_over_remove() -> None:
    schema = {"Foo": am.State(add=["Bar"], remove=["Bar"]), "Bar": am.State()}

    mach = am.Machine(schema)

    assert mach.schema()["Foo"].remove == ()
    assert mach.schema()["Foo"].add == ("Bar",)


def test_self_removal_dropped() -> None:
    mach = am.Machine({"Foo": am.State(remove=["Foo"], after=["Foo"])})

    assert mach.schema()["Foo"].remove == ()
    assert mach.schema()["Foo"].after == ()


def test_state_order_sets_names() -> None:
    schema = {"A": am.State(), "B": am.State()}

    mach = am.Machine(schema, state_order=["Exception", "B", "A"])

    assert mach.state_names() == ("Exception", "B", "A")
    assert mach.index("B") == 1


def test_default_order_appends_exception() -> None:
    mach = am.Machine({"B": am.State(), "A": am.State()})

    assert mach.state_names() == ("B", "A", "Exception")


def test_state_order_unknown_raises() -> None:
    schema = {"A": am.State(), "B": am.State()}

    with pytest.raises(am.SchemaError) as info:
        am.Machine(schema, state_order=["A", "B", "Exception", "Zed"])

    assert "Zed" in str(info.value)


def test_state_order_missing_raises() -> None:
    schema = {"A": am.State(), "B": am.State()}

    with pytest.raises(am.SchemaError) as info:
        am.Machine(schema, state_order=["A", "B"])

    assert "Exception" in str(info.value)


def test_state_order_repeated_raises() -> None:
    schema = {"A": am.State(), "B": am.State()}

    with pytest.raises(am.SchemaError):
        am.Machine(schema, state_order=["A", "A", "B", "Exception"])


def test_schema_plain_dicts() -> None:
    schema = {"Start": {"add": ["Ready"]}, "Ready": {"require": ["Start"]}}

    mach = am.Machine(schema)
    mach.add("Start")

    assert mach.active_states() == ["Start", "Ready"]
    assert mach.schema()["Ready"] == am.State(require=["Start"])


def test_schema_dict_unknown_field() -> None:
    with pytest.raises(am.SchemaError) as info:
        am.Machine({"Start": {"adds": ["Ready"]}})

    assert "adds" in str(info.value)


def test_schema_declared_exception_kept() -> None:
    mach = am.Machine({"Exception": am.State(multi=True, tags=["err"])})

    assert mach.schema()["Exception"].tags == ("err",)
    assert mach.state_names() == ("Exception",)


@pytest.mark.parametrize("name", ["", 5], ids=["empty", "int"])
def test_schema_bad_state_name(name: object) -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({name: am.State()})  # type: ignore[dict-item]


def test_schema_not_mapping_raises() -> None:
    with pytest.raises(TypeError):
        am.Machine([("A", am.State())])  # type: ignore[arg-type]


@pytest.mark.parametrize("machine_id", ["", 5], ids=["empty", "int"])
def test_machine_bad_id_raises(machine_id: object) -> None:
    with pytest.raises(TypeError):
        am.Machine({"A": am.State()}, id=machine_id)  # type: ignore[arg-type]

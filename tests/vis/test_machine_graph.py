"""Tests of machine_graph: nodes, relation edges, highlighting and clusters."""

from __future__ import annotations

import re

import pytest

import asyncmachine as am
from asyncmachine import vis


def node_line(dot: str, state: str) -> str:
    """Return the DOT line of the node whose label starts with `state`."""
    for line in dot.splitlines():
        if f'label="{state}\\ntick' in line:
            return line
    raise AssertionError(f"no node for {state} in:\n{dot}")


def test_machine_graph_has_node_per_state(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach))

    for state in mach.state_names():
        assert node_line(dot, state)
        assert f"id=M_vis_foo__{state}" in dot


def test_machine_graph_cluster_is_labelled_with_id(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach))

    assert "subgraph cluster_m0 {" in dot
    assert 'label="vis-foo"' in dot


def test_relation_edges_have_own_style(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach))
    lines = [line for line in dot.splitlines() if "->" in line]
    by_class = {}
    for line in lines:
        match = re.search(r'class="(rel-[a-z0-9]+)"', line)
        assert match, line
        by_class.setdefault(match.group(1), []).append(line)

    assert sorted(by_class) == ["rel-add", "rel-after", "rel-remove2", "rel-require"]
    assert "arrowhead=normal" in by_class["rel-add"][0]
    assert "arrowhead=dot" in by_class["rel-require"][0]
    assert "style=dashed" in by_class["rel-after"][0]
    assert "dir=both" in by_class["rel-remove2"][0]
    assert "penwidth=3" in by_class["rel-remove2"][0]
    colors = {re.search(r'color="(#\w+)"', v[0]).group(1) for v in by_class.values()}
    assert len(colors) == 4


def test_relation_edges_connect_states(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach))
    names = mach.state_names()

    def node(state: str) -> str:
        return f"m0_s{names.index(state)}"

    assert f"{node('Start')} -> {node('Ready')} [label=add" in dot
    assert f"{node('Ready')} -> {node('Start')} [label=require" in dot
    assert f"{node('Far')} -> {node('Online')} [label=require" in dot
    assert f"{node('Bored')} -> {node('Ready')} [label=after" in dot
    # The mutual remove of Msg and Bored is one edge.
    assert dot.count('label="double remove"') == 1


def test_one_way_remove_is_thin() -> None:
    mach = am.Machine({"A": am.State(remove=["B"]), "B": am.State()}, id="vis-one-way")

    dot = vis.to_dot(vis.machine_graph(mach))

    assert "label=remove" in dot
    assert "double remove" not in dot
    assert "arrowtail=diamond" in dot


def test_active_states_highlighted_with_ticks(mach: am.Machine) -> None:
    mach.add("Start")
    mach.add("Msg")
    mach.add("Msg")
    dot = vis.to_dot(vis.machine_graph(mach))

    start = node_line(dot, "Start")
    msg = node_line(dot, "Msg")
    bored = node_line(dot, "Bored")
    assert 'label="Start\\ntick 1"' in start
    assert 'fillcolor="#329241"' in start
    assert 'label="Msg\\ntick 3\\nmulti"' in msg
    assert "state active multi" in msg
    assert 'fillcolor="#F9E2AF"' in msg
    assert "state inactive" in bored
    assert 'fillcolor="#45475A"' in bored


def test_error_states_are_red() -> None:
    mach = am.Machine({"ErrNet": am.State(require=["Exception"])}, id="vis-err")
    mach.add_err_state("ErrNet", ValueError("boom"))

    dot = vis.to_dot(vis.machine_graph(mach))

    assert 'fillcolor="#E64553"' in node_line(dot, "ErrNet")
    assert 'fillcolor="#E64553"' in node_line(dot, "Exception")


def test_auto_and_multi_marked(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach))

    online = node_line(dot, "Online")
    msg = node_line(dot, "Msg")
    assert "\\nauto" in online
    assert "bold" in online
    assert "\\nmulti" in msg
    assert "peripheries=2" in msg
    assert "peripheries" not in node_line(dot, "Start")


def test_groups_become_clusters(mach: am.Machine) -> None:
    mach.set_groups({"basics": ["Start", "Ready"], "chat": ["Msg", "Bored", "Start"]})

    dot = vis.to_dot(vis.machine_graph(mach))

    basics = dot.index("label=basics")
    chat = dot.index("label=chat")
    assert "subgraph cluster_m0_g0" in dot
    assert "subgraph cluster_m0_g1" in dot
    # Start is listed in both groups and drawn once, in the first.
    assert dot.count('label="Start\\ntick') == 1
    assert basics < dot.index('label="Start\\ntick') < chat
    assert chat < dot.index('label="Msg\\ntick')


def test_states_filter(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach, states=["Start", "Ready"]))

    assert "Start\\ntick" in dot
    assert "Ready\\ntick" in dot
    assert "Msg\\ntick" not in dot
    assert dot.count("->") == 2


def test_distance_from_state(mach: am.Machine) -> None:
    near = vis.to_dot(vis.machine_graph(mach, from_state="Start", distance=1))
    far = vis.to_dot(vis.machine_graph(mach, from_state="Start", distance=3))
    connected = vis.to_dot(vis.machine_graph(mach, from_state="Far"))

    assert "Ready\\ntick" in near
    assert "Online\\ntick" not in near
    assert "Far\\ntick" in far
    assert "Exception\\ntick" not in far
    for state in ("Start", "Ready", "Msg", "Bored", "Online", "Far"):
        assert f"{state}\\ntick" in connected


def test_distance_zero_is_the_state_alone(mach: am.Machine) -> None:
    dot = vis.to_dot(vis.machine_graph(mach, from_state="Msg", distance=0))

    assert "Msg\\ntick" in dot
    assert "Bored\\ntick" not in dot


def test_hide_exception_while_inactive(mach: am.Machine) -> None:
    hidden = vis.to_dot(vis.machine_graph(mach, hide_exception=True))
    mach.add_err(ValueError("boom"))
    visible = vis.to_dot(vis.machine_graph(mach, hide_exception=True))

    assert "Exception\\ntick" not in hidden
    assert "Exception\\ntick 1" in visible


def test_unknown_state_filters_raise(mach: am.Machine) -> None:
    with pytest.raises(am.StateError, match="'Nope'.*vis-foo"):
        vis.machine_graph(mach, states=["Start", "Nope"])
    with pytest.raises(am.StateError, match="from_state.*'Nope'"):
        vis.machine_graph(mach, from_state="Nope")


def test_distance_without_from_state_raises(mach: am.Machine) -> None:
    with pytest.raises(ValueError, match="needs from_state"):
        vis.machine_graph(mach, distance=1)
    with pytest.raises(ValueError, match="0 or more"):
        vis.machine_graph(mach, from_state="Start", distance=-1)


def test_tags_note(mach: am.Machine) -> None:
    tagged = am.Machine({"A": am.State()}, id="vis-tagged", tags=["rpc-server"])

    dot = vis.to_dot(vis.machine_graph(tagged))

    assert 'label="#rpc-server"' in dot
    assert "shape=note" in dot


def test_odd_state_names_are_escaped() -> None:
    mach = am.Machine(
        {'Quote"d': am.State(), "Colon:State": am.State(add=['Quote"d'])},
        id="vis:odd id",
    )

    dot = vis.to_dot(vis.machine_graph(mach))

    assert 'label="Quote\\"d\\ntick 0"' in dot
    assert "id=M_vis_odd_id__Colon_State" in dot
    assert "m0_s1 -> m0_s0" in dot


def test_disposed_machine_title(mach: am.Machine) -> None:
    mach.dispose()

    dot = vis.to_dot(vis.machine_graph(mach))

    assert "vis-foo (disposed)" in dot

"""Tests of network_graph: machines as clusters, links, halves and parents."""

from __future__ import annotations

import re

import pytest

import asyncmachine as am
from asyncmachine import vis

from .conftest import SCHEMA


@pytest.fixture
def pair() -> tuple[am.Machine, am.Machine]:
    foo = am.Machine(SCHEMA, id="net-foo")
    mirror = am.Machine(SCHEMA, id="net-foo-mirror", parent_id="net-foo")
    return foo, mirror


def edge_with(dot: str, css_class: str) -> list[str]:
    return [line for line in dot.splitlines() if f'class="{css_class}"' in line]


def test_machines_are_clusters(pair: tuple[am.Machine, am.Machine]) -> None:
    dot = vis.to_dot(vis.network_graph(pair))

    assert "subgraph cluster_m0 {" in dot
    assert "subgraph cluster_m1 {" in dot
    assert 'label="net-foo"' in dot
    assert 'label="net-foo-mirror"' in dot
    assert dot.count('label="Start\\ntick') == 2


def test_link_kinds_have_own_style(pair: tuple[am.Machine, am.Machine]) -> None:
    links = [
        ("mirror", "net-foo-mirror", None, "net-foo", None),
        vis.Link("pipe", "net-foo", "Msg", "net-foo-mirror", "Msg"),
        ("rpc", "net-foo-mirror", None, "net-foo", None),
    ]

    dot = vis.to_dot(vis.network_graph(pair, links))

    mirror = edge_with(dot, "link-mirror")
    pipe = edge_with(dot, "link-pipe")
    rpc = edge_with(dot, "link-rpc")
    assert len(mirror) == 1
    assert len(pipe) == 1
    assert len(rpc) == 1
    assert "style=dotted" in mirror[0]
    assert "style=dashed" in pipe[0]
    assert "penwidth=4" in rpc[0]
    colors = {re.search(r'color="(#\w+)"', line).group(1) for line in mirror + pipe}
    assert len(colors) == 2


def test_machine_links_clip_at_clusters(pair: tuple[am.Machine, am.Machine]) -> None:
    dot = vis.to_dot(
        vis.network_graph(pair, [("mirror", "net-foo-mirror", None, "net-foo", None)])
    )

    mirror = edge_with(dot, "link-mirror")[0]
    assert "ltail=cluster_m1" in mirror
    assert "lhead=cluster_m0" in mirror


def test_state_links_join_state_nodes(pair: tuple[am.Machine, am.Machine]) -> None:
    index = pair[0].state_names().index("Msg")

    dot = vis.to_dot(
        vis.network_graph(pair, [("pipe", "net-foo", "Msg", "net-foo-mirror", "Msg")])
    )

    pipe = edge_with(dot, "link-pipe")[0]
    assert pipe.strip().startswith(f"m0_s{index} -> m1_s{index}")
    assert "lhead" not in pipe


def test_parent_edge(pair: tuple[am.Machine, am.Machine]) -> None:
    dot = vis.to_dot(vis.network_graph(pair))

    parent = edge_with(dot, "link-parent")
    assert len(parent) == 1
    assert "ltail=cluster_m1" in parent[0]
    assert "lhead=cluster_m0" in parent[0]


def test_unknown_machine_is_half(pair: tuple[am.Machine, am.Machine]) -> None:
    links = [
        ("rpc", "browser-bar-x1", None, "net-foo", None),
        ("pipe", "net-foo", "Msg", "browser-bar-x1", "Msg"),
    ]

    dot = vis.to_dot(vis.network_graph(pair, links))

    halves = [line for line in dot.splitlines() if 'class="machine half"' in line]
    assert len(halves) == 1
    assert "browser-bar-x1" in halves[0]
    pipe = edge_with(dot, "link-pipe")[0]
    assert "-> half0" in pipe
    assert "headlabel=Msg" in pipe


def test_hidden_state_link_attaches_to_cluster() -> None:
    foo = am.Machine(SCHEMA, id="net-hidden")
    bar = am.Machine(SCHEMA, id="net-hidden-bar")

    dot = vis.to_dot(
        vis.network_graph(
            [foo, bar],
            [("pipe", "net-hidden", "Exception", "net-hidden-bar", "Exception")],
            hide_exception=True,
        )
    )

    pipe = edge_with(dot, "link-pipe")[0]
    assert "ltail=cluster_m0" in pipe
    assert "taillabel=Exception" in pipe
    assert "headlabel=Exception" in pipe


def test_map_view_draws_boxes(pair: tuple[am.Machine, am.Machine]) -> None:
    pair[0].add("Start")

    dot = vis.to_dot(
        vis.network_graph(
            pair, [("mirror", "net-foo-mirror", None, "net-foo", None)], states=False
        )
    )

    assert "cluster" not in dot
    assert "tick" not in dot
    assert 'label="net-foo\\nStart Ready Online"' in dot
    assert len(edge_with(dot, "link-mirror")) == 1
    assert "lhead" not in dot


def test_invalid_links_raise(pair: tuple[am.Machine, am.Machine]) -> None:
    with pytest.raises(ValueError, match="invalid link kind 'tunnel'"):
        vis.network_graph(pair, [("tunnel", "net-foo", None, "net-foo-mirror", None)])
    with pytest.raises(ValueError, match="expected \\(kind"):
        vis.network_graph(pair, [("rpc", "net-foo")])
    with pytest.raises(am.StateError, match="'Nope' of machine 'net-foo'"):
        vis.network_graph(pair, [("pipe", "net-foo", "Nope", "net-foo-mirror", None)])


def test_repeated_machine_raises(pair: tuple[am.Machine, am.Machine]) -> None:
    with pytest.raises(ValueError, match="given twice"):
        vis.network_graph([pair[0], pair[0]])

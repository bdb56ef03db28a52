"""Tests of SVG, PNG and file output with the real dot program."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine import vis

from .conftest import SCHEMA

pytestmark = pytest.mark.usefixtures("need_dot")


def test_svg_renders_states(mach: am.Machine) -> None:
    mach.add("Start")

    svg = vis.to_svg(vis.machine_graph(mach))

    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    for state in mach.state_names():
        assert f">{state}</text>" in svg
    assert ">tick 1</text>" in svg
    assert 'id="M_vis_foo__Start"' in svg
    assert 'class="node state active"' in svg


def test_svg_edges_keep_relation_classes(mach: am.Machine) -> None:
    svg = vis.to_svg(vis.machine_graph(mach))

    svg = svg.replace("&#45;", "-")

    for css_class in ("rel-add", "rel-require", "rel-remove2", "rel-after"):
        assert f"edge {css_class}" in svg


def test_odd_names_render() -> None:
    mach = am.Machine(
        {'Quote"d': am.State(), "Colon:State": am.State(add=['Quote"d']), "A<B>": {}},
        id="vis:odd id",
    )
    recorder = vis.record_transitions(mach)
    mach.add(["Colon:State", "A<B>"])

    assert "<svg" in vis.to_svg(vis.machine_graph(mach))
    assert "<svg" in vis.to_svg(vis.sequence_graph(recorder.records()))


def test_network_and_sequence_render(mach: am.Machine) -> None:
    mirror = am.Machine(SCHEMA, id="vis-foo-mirror", parent_id="vis-foo")
    recorder = vis.record_transitions(mach)
    mach.add("Start")
    links = [
        ("mirror", "vis-foo-mirror", None, "vis-foo", None),
        ("pipe", "vis-foo", "Msg", "vis-bar", "Msg"),
        ("rpc", "vis-bar", None, "vis-foo", None),
    ]

    network = vis.to_svg(vis.network_graph([mach, mirror], links))
    boxes = vis.to_svg(vis.network_graph([mach, mirror], links, states=False))
    sequence = vis.to_svg(vis.sequence_graph(recorder.records()))
    # dot writes "-" in text as a character reference.
    network = network.replace("&#45;", "-")
    boxes = boxes.replace("&#45;", "-")

    assert ">vis-bar</text>" in network
    assert ">vis-foo-mirror</text>" in boxes
    assert ">[add] Start</text>" in sequence


def test_png_is_png(mach: am.Machine) -> None:
    png = vis.to_png(vis.machine_graph(mach))

    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_render_by_extension(mach: am.Machine, tmp_path: Path) -> None:
    graph = vis.machine_graph(mach)

    svg = vis.render(graph, tmp_path / "foo.svg")
    png = vis.render(graph, tmp_path / "foo.PNG")
    dot = vis.render(graph, str(tmp_path / "foo.dot"))

    assert "<svg" in svg.read_text()
    assert png.read_bytes().startswith(b"\x89PNG")
    assert dot.read_text() == vis.to_dot(graph)


def test_render_unknown_extension(mach: am.Machine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown extension '.pdf'"):
        vis.render(vis.machine_graph(mach), tmp_path / "foo.pdf")
    assert not (tmp_path / "foo.pdf").exists()


MISSING_DOT_SCRIPT = textwrap.dedent(
    """
    import asyncmachine as am
    from asyncmachine import vis

    mach = am.Machine({"Start": am.State()}, id="no-dot")
    graph = vis.machine_graph(mach)
    print("DOT", "Start" in vis.to_dot(graph))
    for call in (vis.to_svg, vis.to_png):
        try:
            call(graph)
        except vis.DotNotFoundError as err:
            print("ERROR", err)
    """
)


def test_missing_dot_names_package(tmp_path: Path) -> None:
    # An empty PATH hides dot; the interpreter is started by its full path.
    result = subprocess.run(
        [sys.executable, "-c", MISSING_DOT_SCRIPT],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "DOT True"
    assert len(lines) == 3
    for line in lines[1:]:
        assert line.startswith("ERROR graphviz's dot program was not found")
        assert "apt-get install graphviz" in line
        assert "brew install graphviz" in line
        assert "to_dot" in line

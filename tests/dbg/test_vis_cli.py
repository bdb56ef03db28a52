"""am-vis: drawing and summarising dump files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import asyncmachine as am
from asyncmachine import history
from asyncmachine.vis_cli import build_machine, dump_links, main, parse_machine_url

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "HandshakeDone": am.State(),
}


def _network_dump(tmp_path: Path) -> Path:
    """root <- child (parent), server <- client (rpc), mirror -> server, far."""
    root = am.Machine(SCHEMA, id="root")
    child = am.Machine(SCHEMA, id="child", parent_id="root")
    server = am.Machine(SCHEMA, id="server", tags=("rpc-server",))
    client = am.Machine(SCHEMA, id="client", parent_id="child")
    mirror = am.Machine(SCHEMA, id="mirror", tags=("rpc-netmach", "src-id:server"))
    far = am.Machine(SCHEMA, id="far")
    machines = [root, child, server, client, mirror, far]
    stores = [history.track(m) for m in machines]
    server.set_log_level(am.LogLevel.OPS)
    root.add("Start")
    root.remove("Start")
    server.add("HandshakeDone", {"id": "client"})
    path = tmp_path / "net.jsonl.gz"
    history.write_dump(path, stores)
    # The core logs args only through handlers; the link comes from a log line.
    dump = history.read_dump(path)
    record = dump.machine("server").records[-1]
    record.log = ("[add] HandshakeDone (id=client)",)
    history.write_dump(path, dump.machines, created=dump.created)
    return path


def test_parse_machine_url() -> None:
    assert parse_machine_url("mach://foo") == ("foo", None)
    assert parse_machine_url("mach://foo/12") == ("foo", "12")
    with pytest.raises(ValueError, match="mach://ID"):
        parse_machine_url("foo/12")


def test_build_machine_at_transition(tmp_path: Path) -> None:
    dump = history.read_dump(_network_dump(tmp_path))
    root = dump.machine("root")
    assert build_machine(root, "0").active_states() == []
    assert build_machine(root, "1").active_states() == ["Start", "Ready"]
    assert build_machine(root, None).active_states() == []
    rebuilt = build_machine(root, "id:" + root.records[0].id)
    assert rebuilt.clock() == {
        "Start": 1,
        "Ready": 1,
        "HandshakeDone": 0,
        "Exception": 0,
    }
    with pytest.raises(ValueError, match="has 2 transitions, not 9"):
        build_machine(root, "9")


def test_dump_links(tmp_path: Path) -> None:
    links = dump_links(history.read_dump(_network_dump(tmp_path)))
    assert ("mirror", "mirror", "server") in [
        (link.kind, link.from_machine, link.to_machine) for link in links
    ]
    assert ("rpc", "client", "server") in [
        (link.kind, link.from_machine, link.to_machine) for link in links
    ]


def test_render_single_machine_dot(tmp_path: Path) -> None:
    dump = _network_dump(tmp_path)
    out = tmp_path / "root.dot"
    assert main(["render-dump", str(dump), "mach://root/1", "-o", str(out)]) == 0
    source = out.read_text()
    assert "Start" in source
    assert "server" not in source


def test_render_bird_follows_links(tmp_path: Path) -> None:
    dump = _network_dump(tmp_path)
    out = tmp_path / "bird.dot"
    args = ["render-dump", str(dump), "mach://server", "-d", "1", "-o", str(out)]
    assert main(args) == 0
    source = out.read_text()
    for drawn in ("server", "client", "mirror"):
        assert drawn in source
    assert "root" not in source

    bird = ["render-dump", str(dump), "mach://server", "--bird", "-o", str(out)]
    assert main(bird) == 0
    source = out.read_text()
    assert "root" in source
    assert "far" not in source


def test_render_map_draws_all(tmp_path: Path) -> None:
    dump = _network_dump(tmp_path)
    out = tmp_path / "map.dot"
    assert main(["render-dump", str(dump), "--map", "-o", str(out)]) == 0
    source = out.read_text()
    for mach_id in ("root", "child", "server", "client", "mirror", "far"):
        assert mach_id in source


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot not installed")
def test_render_svg(tmp_path: Path) -> None:
    dump = _network_dump(tmp_path)
    out = tmp_path / "root.svg"
    assert main(["render-dump", str(dump), "mach://root", "-o", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")


def test_render_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = _network_dump(tmp_path)
    assert main(["render-dump", str(dump), "-o", str(tmp_path / "x.dot")]) == 1
    assert "name one as mach://ID" in capsys.readouterr().err
    assert main(["render-dump", str(dump), "mach://nope"]) == 1
    assert "no machine 'nope'" in capsys.readouterr().err
    assert main(["render-dump", str(tmp_path / "missing.gz"), "--map"]) == 1
    assert "missing.gz" in capsys.readouterr().err


def test_inspect_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = _network_dump(tmp_path)
    assert main(["inspect-dump", str(dump)]) == 0
    out = capsys.readouterr().out
    assert "6 machines, 3 transitions" in out
    assert "root\n" in out
    assert "  transitions: 2 (0 canceled)" in out
    assert "  last clock: (Start:2 Ready:2 HandshakeDone:0 Exception:0)" in out
    assert "  parent: root" in out
    assert "  active: HandshakeDone" in out

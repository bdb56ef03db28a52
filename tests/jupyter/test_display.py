"""Tests of the rich display of machines in a real IPython shell."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

import asyncmachine as am
from asyncmachine import jupyter

from .conftest import SCHEMA


@pytest.mark.usefixtures("need_dot")
def test_machine_formats_as_svg(shell: InteractiveShell) -> None:
    mach = am.Machine(SCHEMA, id="jt-display")
    mach.add("Start")

    data, _ = shell.display_formatter.format(mach)

    svg = data["image/svg+xml"]
    assert svg.startswith("<svg")
    assert "<?xml" not in svg
    for state in ("Start", "Ready", "Msg", "Exception"):
        assert f">{state}</text>" in svg
    assert ">tick 1</text>" in svg


def test_machine_text_fallback(shell: InteractiveShell) -> None:
    mach = am.Machine(SCHEMA, id="jt-text")
    mach.add("Start")

    data, _ = shell.display_formatter.format(mach)

    assert data["text/plain"] == "jt-text (Start:1 Ready:1) [Msg:0 Exception:0]"


def test_disposed_machine_text(shell: InteractiveShell) -> None:
    mach = am.Machine(SCHEMA, id="jt-disposed")
    mach.dispose()

    data, _ = shell.display_formatter.format(mach)

    assert data["text/plain"] == "jt-disposed (disposed)"


def test_display_starts_history(shell: InteractiveShell) -> None:
    mach = am.Machine(SCHEMA, id="jt-history")
    mach.add("Msg")
    assert jupyter.recorder_of(mach) is None

    shell.display_formatter.format(mach)
    shell.display_formatter.format(mach)
    mach.add("Start")

    recorder = jupyter.recorder_of(mach)
    assert recorder is not None
    assert mach.tracers().count(recorder) == 1
    assert [r.summary() for r in recorder.records()] == [
        "[add] Start -> +Start +Ready (executed)"
    ]


def test_core_has_no_display_hooks() -> None:
    # The extension registers formatters; the core class stays unpatched.
    assert not hasattr(am.Machine, "_repr_svg_")
    assert not hasattr(am.Machine, "_repr_mimebundle_")


NO_DOT_SCRIPT = textwrap.dedent(
    """
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.error import UsageError
    from traitlets.config import Config

    import asyncmachine as am

    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "asyncmachine.jupyter")
    mach = am.Machine({"Start": am.State()}, id="no-dot")
    data, _ = ip.display_formatter.format(mach)
    print("MIME", sorted(data))
    print("TEXT", data["text/plain"])
    try:
        ip.run_line_magic("am", "diagram no-dot")
    except UsageError as err:
        print("USAGE", err)
    """
)


def test_without_dot_falls_back_to_text(tmp_path: Path) -> None:
    # An empty PATH hides dot; the interpreter is started by its full path.
    result = subprocess.run(
        [sys.executable, "-c", NO_DOT_SCRIPT],
        env={"PATH": str(tmp_path), "IPYTHONDIR": str(tmp_path / "ipython")},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "MIME ['text/plain']"
    assert lines[1] == "TEXT no-dot () [Start:0 Exception:0]"
    assert lines[2].startswith("USAGE graphviz's dot program was not found")
    assert lines[2].endswith("%am diagram --dot prints the DOT source")
    assert "apt-get install graphviz" in result.stderr

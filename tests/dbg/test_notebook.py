"""The notebook inspector: its widgets driven directly, over real sources."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.formatters import DisplayFormatter

import asyncmachine as am
from asyncmachine import dbg, history, telemetry

REPO_ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "Start": am.State(add=["Idle"]),
    "Idle": am.State(require=["Start"], remove=["Working"]),
    "Working": am.State(require=["Start"], remove=["Idle"]),
    "Job": am.State(multi=True, require=["Working"]),
    "Done": am.State(remove=["Working", "Idle"]),
}

pytestmark = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="graphviz's dot is not installed; run scripts/install_system_deps.sh",
)


def _run_worker(mach: am.Machine) -> None:
    mach.add("Start")  # 1: Start, Idle
    mach.add("Working")  # 2
    mach.add("Job", {"number": 1})  # 3
    mach.add("Idle")  # 4: Working and Job end
    mach.add("Done")  # 5
    mach.add("Working")  # 6: canceled, Done removes Working


def _ticks(svg: str) -> dict[str, int]:
    """Return the tick drawn under each state node of a diagram."""
    pairs = re.findall(r">(\w+)</text>\n<text[^>]*>tick (\d+)</text>", svg)
    return {name: int(tick) for name, tick in pairs}


def test_history_positions_and_summary() -> None:
    mach = am.Machine(SCHEMA, id="worker")
    hist = history.track(mach, max_records=None)
    _run_worker(mach)
    inspector = dbg.inspector(hist)

    assert inspector.machine_id == "worker"
    assert inspector.slider.max == 6
    assert inspector.position == 6
    assert "add Working -&gt; canceled" in inspector.summary.value

    inspector.slider.value = 3
    text = inspector.summary_text()
    assert "worker: transition 3 of 6" in text
    assert "add Job -> executed" in text
    assert "activated: Job\n" in text
    assert "after: (Start:1 Working:1 Job:1)" in text
    assert "args: number" in text
    assert _ticks(inspector.diagram.value) == {
        "Start": 1,
        "Idle": 2,
        "Working": 1,
        "Job": 1,
        "Done": 0,
        "Exception": 0,
    }

    inspector.slider.value = 4
    assert "deactivated: Working Job" in inspector.summary_text()
    assert _ticks(inspector.diagram.value)["Job"] == 2

    inspector.slider.value = 0
    assert "before the first transition" in inspector.summary_text()
    assert set(_ticks(inspector.diagram.value).values()) == {0}


def test_buttons_step_and_clamp() -> None:
    mach = am.Machine(SCHEMA, id="stepper")
    hist = history.track(mach, max_records=None)
    _run_worker(mach)
    inspector = dbg.inspector(hist)

    inspector.next_button.click()
    assert inspector.position == 6
    inspector.previous_button.click()
    inspector.previous_button.click()
    assert inspector.position == 4
    assert inspector.record is not None
    assert inspector.record.called == ("Idle",)
    inspector.show(-5)
    assert inspector.position == 0
    assert inspector.record is None
    inspector.previous_button.click()
    assert inspector.position == 0
    inspector.next_button.click()
    assert inspector.position == 1
    assert "Start:1 Idle:1" in inspector.summary.value


def test_collector_dropdown_refresh_and_dump(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            worker = am.Machine(SCHEMA, id="worker")
            other = am.Machine({"A": am.State(), "B": am.State()}, id="other")
            telemetry.attach(worker, collector.address)
            telemetry.attach(other, collector.address)
            _run_worker(worker)
            other.add("A")
            assert await telemetry.flush()

            inspector = dbg.inspector(collector, machine_id="worker")
            assert inspector.live
            assert inspector.refresh_button is not None
            assert list(inspector.dropdown.options) == ["worker", "other"]
            assert inspector.slider.max == 6

            inspector.dropdown.value = "other"
            assert inspector.slider.max == 1
            assert inspector.position == 1
            assert "other: transition 1 of 1" in inspector.summary_text()
            assert _ticks(inspector.diagram.value)["A"] == 1

            other.add("B")
            other.remove("A")
            assert await telemetry.flush()
            inspector.refresh_button.click()
            assert inspector.slider.max == 3
            assert inspector.position == 3
            assert "deactivated: A" in inspector.summary_text()

            path = collector.dump(tmp_path / "session.jsonl.gz")
            from_dump = dbg.inspector(str(path), machine_id="worker")
            assert not from_dump.live
            assert from_dump.refresh_button is None
            from_dump.show(3)
            inspector.select("worker")
            inspector.show(3)
            assert from_dump.summary_text() == inspector.summary_text()
            await telemetry.close()

    asyncio.run(scenario())


def test_rebuilt_machines_leave_live_ones_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with dbg.Collector("127.0.0.1", 0) as collector:
            monkeypatch.setenv(telemetry.ENV_ADDR, collector.address)
            live = am.Machine(SCHEMA, id="live-worker")
            hist = history.track(live, max_records=None)
            _run_worker(live)
            assert await telemetry.flush()
            connection = collector.machine("live-worker").conn_id

            inspector = dbg.inspector(hist)
            for position in range(7):
                inspector.show(position)
            live.add("Start")
            assert await telemetry.flush()

            assert any(m is live for m in am.machines())
            assert len(collector.records("live-worker")) == 7
            assert collector.machine("live-worker").conn_id == connection
            assert collector.connections == 1
            await telemetry.close()

    asyncio.run(scenario())


def test_display_bundle_has_widget_svg_and_text() -> None:
    mach = am.Machine(SCHEMA, id="shown")
    hist = history.track(mach, max_records=None)
    _run_worker(mach)
    inspector = dbg.inspector(hist)
    inspector.show(2)

    data, _metadata = DisplayFormatter().format(inspector)

    assert "model_id" in data["application/vnd.jupyter.widget-view+json"]
    assert data["image/svg+xml"].startswith("<svg")
    assert _ticks(data["image/svg+xml"])["Working"] == 1
    assert data["text/plain"].startswith("shown: transition 2 of 6")


def test_invalid_sources_and_machines(tmp_path: Path) -> None:
    mach = am.Machine(SCHEMA, id="checked")
    hist = history.track(mach)
    with pytest.raises(KeyError, match="no machine 'nope'"):
        dbg.inspector(hist, machine_id="nope")
    with pytest.raises(TypeError, match="dump file path"):
        dbg.inspector(42)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        dbg.inspector(tmp_path / "missing.jsonl.gz")


def test_missing_ipywidgets_named() -> None:
    code = (
        "import sys\n"
        "sys.modules['ipywidgets'] = None\n"
        "import asyncmachine as am\n"
        "from asyncmachine import dbg, history\n"
        "mach = am.Machine({'A': am.State()}, id='m')\n"
        "try:\n"
        "    dbg.inspector(history.track(mach))\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "needs the ipywidgets package" in result.stdout
    assert "pip install ipywidgets" in result.stdout

"""Tests of live() in a real IPython shell, with an asyncio loop of the test."""

from __future__ import annotations

import asyncio
import threading

import pytest
from IPython.utils.capture import RichOutput, capture_output

import asyncmachine as am
from asyncmachine.jupyter import LiveDiagram, live

from .conftest import SCHEMA

pytestmark = pytest.mark.usefixtures("need_dot", "shell")


async def wait_for_updates(view: LiveDiagram, count: int) -> None:
    """Return once `view` published `count` updates."""
    async with asyncio.timeout(30):
        while view.updates < count:
            await asyncio.sleep(0.01)


def updates_of(outputs: list[RichOutput], display_id: str) -> list[RichOutput]:
    return [
        out
        for out in outputs
        if out.update and out.transient.get("display_id") == display_id
    ]


def test_live_shows_diagram_with_display_id() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-show")

    async def main() -> tuple[LiveDiagram, list[RichOutput]]:
        with capture_output() as captured:
            view = live(mach)
        view.stop()
        return view, captured.outputs

    view, outputs = asyncio.run(main())

    first = outputs[0]
    assert not first.update
    assert first.data["image/svg+xml"].startswith("<svg")
    assert (
        first.data["text/plain"]
        == "jt-live-show () [Start:0 Ready:0 Msg:0 Exception:0]"
    )
    assert first.transient["display_id"] == view.display_ids[0]


def test_burst_coalesces_to_one_update() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-burst")

    async def main() -> tuple[LiveDiagram, list[RichOutput]]:
        with capture_output() as captured:
            view = live(mach, min_interval=0.05)
            mach.add("Start")
            for _ in range(30):
                mach.add("Msg")
            await wait_for_updates(view, 1)
            # Nothing else was requested, so no other update may follow.
            await asyncio.sleep(0.2)
            view.stop()
        return view, captured.outputs

    view, outputs = asyncio.run(main())

    updates = updates_of(outputs, view.display_ids[0])
    # The burst's update, then the one of stop().
    assert len(updates) == 2
    # Msg is Multi: 1 for the first add, then 2 for each of the other 29.
    assert "Msg:59" in updates[0].data["text/plain"]
    assert ">tick 59</text>" in updates[0].data["image/svg+xml"]


def test_background_task_updates_display() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-task")
    final = "jt-live-task (Start:1 Ready:1 Msg:9) [Exception:0]"

    async def drive() -> None:
        mach.add("Start")
        for _ in range(5):
            await asyncio.sleep(0.01)
            mach.add("Msg")

    async def main() -> tuple[LiveDiagram, list[RichOutput]]:
        with capture_output() as captured:
            view = live(mach, min_interval=0.02)
            await asyncio.create_task(drive())
            display_id = view.display_ids[0]
            async with asyncio.timeout(30):
                while final not in [
                    out.data["text/plain"]
                    for out in updates_of(captured.outputs, display_id)
                ]:
                    await asyncio.sleep(0.01)
            view.stop()
        return view, captured.outputs

    view, outputs = asyncio.run(main())

    updates = updates_of(outputs, view.display_ids[0])
    texts = [out.data["text/plain"] for out in updates]
    # Six transitions at most, one update each, plus the one of stop().
    assert 2 <= len(updates) <= 7
    assert texts[-2] == final
    assert texts[-1] == final


def test_mutation_from_thread_updates_display() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-thread")

    async def main() -> tuple[LiveDiagram, list[RichOutput]]:
        with capture_output() as captured:
            view = live(mach, min_interval=0)
            thread = threading.Thread(target=mach.add, args=("Start",))
            thread.start()
            await asyncio.to_thread(thread.join)
            await wait_for_updates(view, 1)
            view.stop()
        return view, captured.outputs

    view, outputs = asyncio.run(main())

    updates = updates_of(outputs, view.display_ids[0])
    assert "Start:1" in updates[0].data["text/plain"]


def test_network_view_is_one_display() -> None:
    foo = am.Machine(SCHEMA, id="jt-live-net-foo")
    bar = am.Machine(SCHEMA, id="jt-live-net-bar")

    async def main() -> tuple[LiveDiagram, list[RichOutput]]:
        with capture_output() as captured:
            view = live(
                foo,
                bar,
                network=True,
                links=[("rpc", "jt-live-net-bar", None, "jt-live-net-foo", None)],
                min_interval=0,
            )
            bar.add("Start")
            await wait_for_updates(view, 1)
            view.stop()
        return view, captured.outputs

    view, outputs = asyncio.run(main())

    assert len(view.display_ids) == 1
    svg = outputs[0].data["image/svg+xml"].replace("&#45;", "-")
    assert ">jt-live-net-foo</text>" in svg
    assert ">jt-live-net-bar</text>" in svg
    assert "link-rpc" in svg


def test_separate_views_per_machine() -> None:
    foo = am.Machine(SCHEMA, id="jt-live-sep-foo")
    bar = am.Machine(SCHEMA, id="jt-live-sep-bar")

    async def main() -> LiveDiagram:
        with capture_output():
            view = live(foo, bar)
            view.stop()
        return view

    view = asyncio.run(main())

    assert len(view.display_ids) == 2
    assert view.display_ids[0] != view.display_ids[1]


def test_stop_detaches_tracers() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-stop")

    async def main() -> LiveDiagram:
        with capture_output():
            view = live(mach)
            view.stop()
        return view

    view = asyncio.run(main())
    updates = view.updates
    mach.add("Start")

    # The history recorder stays, the live view's tracer is gone.
    assert [type(t).__name__ for t in mach.tracers()] == ["TransitionRecorder"]
    assert view.updates == updates


def test_live_without_loop_updates_in_caller() -> None:
    mach = am.Machine(SCHEMA, id="jt-live-noloop")

    with capture_output() as captured:
        view = live(mach, min_interval=0)
        mach.add("Start")
        view.stop()

    updates = updates_of(captured.outputs, view.display_ids[0])
    assert "Start:1" in updates[0].data["text/plain"]


def test_live_argument_errors() -> None:
    with pytest.raises(ValueError, match="at least one machine"):
        live()
    mach = am.Machine(SCHEMA, id="jt-live-errors")
    with pytest.raises(ValueError, match="min_interval"):
        live(mach, min_interval=-1)
    with pytest.raises(ValueError, match="network=True"):
        live(mach, links=[("rpc", "a", None, "b", None)])

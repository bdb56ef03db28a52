"""Tests of transition records, the recorder tracer and sequence_graph."""

from __future__ import annotations

import pytest

import asyncmachine as am
from asyncmachine import vis


def test_recorder_records_changes(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach)

    mach.add("Start")
    mach.add("Msg", {"text": "hi"})
    mach.add("Msg")
    mach.add("Bored")

    records = recorder.records()
    assert [r.called for r in records] == [
        ("Start",),
        ("Online",),
        ("Msg",),
        ("Msg",),
        ("Bored",),
    ]
    start, online, msg, again, bored = records
    assert start.activated == ("Start", "Ready")
    assert start.ticks == {"Start": 1, "Ready": 1}
    assert online.auto
    assert msg.args == {"text": "'hi'"}
    assert again.activated == ()
    assert again.reentered == ("Msg",)
    assert again.ticks["Msg"] == 3
    assert bored.deactivated == ("Msg",)
    assert bored.ticks == {"Bored": 1, "Msg": 4}
    assert bored.machine_time == sum(mach.time())
    assert all(r.machine_id == "vis-foo" for r in records)


def test_recorder_records_canceled(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach)

    result = mach.add("Ready")

    record = recorder.records()[-1]
    assert result.canceled
    assert not record.accepted
    assert record.result == "canceled"
    assert record.activated == ()
    assert record.summary() == "[add] Ready (canceled)"


def test_recorder_skips_checks_and_rejections(mach: am.Machine) -> None:
    recorder = vis.TransitionRecorder(include_canceled=False)
    mach.add_tracer(recorder)

    mach.can_add("Start")
    mach.add("Ready")

    assert recorder.records() == []


def test_recorder_keeps_max_records(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach, max_records=3)

    for _ in range(5):
        mach.add("Msg")

    records = recorder.records()
    assert len(records) == 3
    assert records[-1].ticks["Msg"] == 9


def test_recorder_rejects_zero_limit() -> None:
    with pytest.raises(ValueError, match="max_records"):
        vis.TransitionRecorder(0)


def test_record_summary(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach)
    mach.add("Msg")
    mach.add("Bored")

    assert recorder.records()[-1].summary() == "[add] Bored -> +Bored -Msg (executed)"


def test_sequence_graph_table(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach)
    mach.add("Start")
    mach.add("Msg")
    mach.add("Msg")
    mach.add("Bored")
    mach.remove("Start")

    dot = vis.to_dot(vis.sequence_graph(recorder.records()))

    for state in ("Start", "Ready", "Msg", "Bored", "Online"):
        assert f"<B>{state}</B>" in dot
    assert "[add] Start" in dot
    assert "[remove] Start" in dot
    assert "<U>+ 1</U>" in dot
    assert "<U>+ 3 again</U>" in dot
    assert "- 4" in dot
    assert dot.count("<TR>") == len(recorder.records()) + 1


def test_sequence_graph_marks_canceled(mach: am.Machine) -> None:
    recorder = vis.record_transitions(mach)
    mach.add("Ready")

    dot = vis.to_dot(vis.sequence_graph(recorder.records()))

    assert "canceled" in dot
    assert "<U>x</U>" in dot


def test_sequence_graph_of_several_machines(mach: am.Machine) -> None:
    other = am.Machine({"Ping": am.State()}, id="vis-other")
    recorder = vis.TransitionRecorder()
    mach.add_tracer(recorder)
    other.add_tracer(recorder)
    mach.add("Msg")
    other.add("Ping")

    dot = vis.to_dot(vis.sequence_graph(recorder.records()))

    assert "vis-foo<BR/>Msg" in dot
    assert "vis-other<BR/>Ping" in dot


def test_sequence_graph_escapes_names() -> None:
    mach = am.Machine({"A<B>": am.State()}, id="vis-html")
    recorder = vis.record_transitions(mach)
    mach.add("A<B>")

    dot = vis.to_dot(vis.sequence_graph(recorder.records()))

    assert "A&lt;B&gt;" in dot
    assert "<B>A<B></B>" not in dot

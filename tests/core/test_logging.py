"""Tests of machine logging through the standard logging module."""

from __future__ import annotations

import logging

import pytest

import asyncmachine as am

LOGGER = "asyncmachine.machine"
SCHEMA = {
    "A": am.State(add=["B"]),
    "B": am.State(),
    "C": am.State(require=["Z"]),
    "Z": am.State(),
}


def machine_records(
    caplog: pytest.LogCaptureFixture, mach_id: str
) -> list[logging.LogRecord]:
    """Return the captured records of the machine logger for one machine."""
    return [
        record
        for record in caplog.records
        if record.name == LOGGER and getattr(record, "mach_id", None) == mach_id
    ]


def test_ops_level_emits_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-ops", log_level=am.LogLevel.OPS)

    mach.add("A")

    messages = [record.getMessage() for record in machine_records(caplog, "log-ops")]
    assert any("[add] A" in message for message in messages)
    assert any("[implied] B" in message for message in messages)
    assert any("[state] +A +B" in message for message in messages)


def test_records_carry_mach_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-id", log_level=am.LogLevel.OPS)

    mach.add("A")

    records = [r for r in caplog.records if r.name == LOGGER]
    assert records
    assert all(getattr(r, "mach_id", None) == "log-id" for r in records)


def test_ops_records_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-debug", log_level=am.LogLevel.OPS)

    mach.add("A")

    records = machine_records(caplog, "log-debug")
    add_records = [r for r in records if "[add] A" in r.getMessage()]
    state_records = [r for r in records if "[state]" in r.getMessage()]
    assert add_records[0].levelno == logging.DEBUG
    assert state_records[0].levelno == logging.INFO


def test_canceled_logged_at_ops(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-cancel", log_level=am.LogLevel.OPS)

    mach.add("C")

    messages = [r.getMessage() for r in machine_records(caplog, "log-cancel")]
    assert any("[reject] C(-Z)" in message for message in messages)
    assert any("[cancel:reject] C" in message for message in messages)


def test_changes_level_state_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-changes", log_level=am.LogLevel.CHANGES)

    mach.add("A")
    mach.remove("B")

    messages = [r.getMessage() for r in machine_records(caplog, "log-changes")]
    assert len(messages) == 2
    assert "[state] +A +B" in messages[0]
    assert "[state] -B" in messages[1]


def test_nothing_level_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-nothing", log_level=am.LogLevel.NOTHING)

    mach.add("A")
    mach.add("C")
    mach.log("user message")

    assert machine_records(caplog, "log-nothing") == []


def test_set_log_level_changes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-set", log_level=am.LogLevel.NOTHING)
    mach.add("A")

    mach.set_log_level(am.LogLevel.CHANGES)
    mach.remove("A")

    messages = [r.getMessage() for r in machine_records(caplog, "log-set")]
    assert mach.log_level() is am.LogLevel.CHANGES
    assert len(messages) == 1
    assert "[state] -A" in messages[0]


def test_log_at_external_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-user", log_level=am.LogLevel.EXTERNAL)

    mach.log("fetched %d rows\nfrom %s", 3, "db")
    mach.add("A")

    records = machine_records(caplog, "log-user")
    assert len(records) == 1
    assert records[0].getMessage().endswith("[exter] fetched 3 rows from db")
    assert records[0].levelno == logging.INFO


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("2", am.LogLevel.CHANGES),
        ("ops", am.LogLevel.OPS),
        ("EVERYTHING", am.LogLevel.EVERYTHING),
        ("9", am.LogLevel.EVERYTHING),
        ("", am.LogLevel.NOTHING),
    ],
)
def test_am_log_env_sets_level(
    monkeypatch: pytest.MonkeyPatch, value: str, level: am.LogLevel
) -> None:
    monkeypatch.setenv("AM_LOG", value)

    mach = am.Machine(SCHEMA)

    assert mach.log_level() is level


def test_am_log_env_emits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("AM_LOG", "changes")

    mach = am.Machine(SCHEMA, id="log-env")
    mach.add("A")

    messages = [r.getMessage() for r in machine_records(caplog, "log-env")]
    assert any("[state] +A +B" in message for message in messages)


def test_am_log_invalid_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monkeypatch.setenv("AM_LOG", "loud")

    mach = am.Machine(SCHEMA)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert mach.log_level() is am.LogLevel.NOTHING
    assert len(warnings) == 1
    assert "loud" in warnings[0].getMessage()


def test_log_level_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AM_LOG", "everything")

    mach = am.Machine(SCHEMA, log_level=am.LogLevel.CHANGES)

    assert mach.log_level() is am.LogLevel.CHANGES


def test_handler_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    class Handlers:
        def AState(self, e: am.Event) -> None:
            raise ValueError("invalid row")

    mach = am.Machine(SCHEMA, id="log-error", handlers=Handlers())
    mach.add("A")

    errors = [
        r for r in machine_records(caplog, "log-error") if r.levelno == logging.ERROR
    ]
    assert len(errors) == 1
    assert "AState" in errors[0].getMessage()
    assert "invalid row" in errors[0].getMessage()


def test_everything_level_lists_handlers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-all", log_level=am.LogLevel.EVERYTHING)

    mach.add("A")

    messages = [r.getMessage() for r in machine_records(caplog, "log-all")]
    assert any("[handle] AEnter" in message for message in messages)
    assert any("[handle] AnyEnter" in message for message in messages)
    assert any("[handle] BState" in message for message in messages)


def test_everything_level_lists_any_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-any", log_level=am.LogLevel.EVERYTHING)

    mach.add("A")

    messages = [r.getMessage() for r in machine_records(caplog, "log-any")]
    assert any("[handle] AnyState" in message for message in messages)


def test_breakpoint_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mach = am.Machine(SCHEMA, id="log-break", log_level=am.LogLevel.CHANGES)
    mach.add_breakpoint(["A"])
    mach.add_breakpoint([], ["B"], strict=True)

    mach.remove("B")
    mach.add("A")
    mach.remove("B")

    messages = [r.getMessage() for r in machine_records(caplog, "log-break")]
    hits = [message for message in messages if "[breakpoint]" in message]
    assert len(hits) == 2
    assert "<Mutation add A>" in hits[0]
    assert "<Mutation remove B>" in hits[1]

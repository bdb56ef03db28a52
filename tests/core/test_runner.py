"""Tests of the case runner in tests/cases.py, on small in-memory cases."""

from __future__ import annotations

import io
import json
from typing import Any

from tests import cases


def make_case(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Return a case with states A and B and no relations."""
    empty = {"auto": False, "multi": False, "add": [], "remove": [], "require": []}
    case = {
        "id": "runner.sample",
        "category": "basics",
        "source": "test_runner.py",
        "description": "a case built by the runner tests",
        "schema": {"A": {**empty, "after": []}, "B": {**empty, "after": []}},
        "state_order": ["A", "B", "Exception"],
        "steps": steps,
        "expect": {},
    }
    case.update(extra)
    return case


def test_passing_case_passes() -> None:
    case = make_case(
        [{"op": "add", "states": ["A"], "expect_result": "executed"}],
        expect={"active": ["A"], "clock": {"A": 1, "B": 0, "Exception": 0}},
    )

    outcome = cases.run_case(case)

    assert outcome.status == "passed", outcome.describe()


def test_unknown_op_fails() -> None:
    outcome = cases.run_case(make_case([{"op": "frobnicate"}]))

    assert outcome.status == "failed"
    assert outcome.where == "0"
    assert "unknown op 'frobnicate'" in outcome.message


def test_unknown_check_fn_fails() -> None:
    step = {"op": "check", "fn": "frobnicate", "expect": True}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert "unknown check fn 'frobnicate'" in outcome.message


def test_unknown_when_kind_fails() -> None:
    step = {"op": "when", "kind": "when_later", "id": "w", "states": ["A"]}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert "unknown when kind 'when_later'" in outcome.message


def test_unknown_action_fails() -> None:
    case = make_case([{"op": "add", "states": ["A"]}], handlers={"AEnter": "jump A"})

    outcome = cases.run_case(case)

    assert outcome.status == "failed"
    assert outcome.where == "setup"
    assert "unknown action 'jump'" in outcome.message


def test_unknown_case_key_fails() -> None:
    outcome = cases.run_case(make_case([], extra_key=1))

    assert outcome.status == "failed"
    assert "unknown case key 'extra_key'" in outcome.message


def test_unknown_step_expectation_fails() -> None:
    step = {"op": "add", "states": ["A"], "expect_colour": "red"}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert "unknown expectation key 'expect_colour'" in outcome.message


def test_unknown_final_expectation_fails() -> None:
    outcome = cases.run_case(make_case([], expect={"colour": "red"}))

    assert outcome.status == "failed"
    assert outcome.where == "expect"
    assert "unknown expectation key 'colour'" in outcome.message


def test_wrong_expectation_names_both_values() -> None:
    step = {"op": "add", "states": ["A"], "expect_active": ["B"]}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert outcome.where == "0: add"
    assert 'expected ["B"]' in outcome.message
    assert 'got ["A"]' in outcome.message


def test_wrong_check_names_both_values() -> None:
    steps: list[dict[str, Any]] = [
        {"op": "add", "states": ["A"]},
        {"op": "check", "fn": "tick", "state": "A", "expect": 5},
    ]

    outcome = cases.run_case(make_case(steps))

    assert outcome.status == "failed"
    assert outcome.where == "1: check tick"
    assert "expected 5, got 1" in outcome.message


def test_check_compares_bool_and_int_strictly() -> None:
    step = {"op": "check", "fn": "is_err", "expect": 0}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert "expected 0, got false" in outcome.message


def test_unexpected_raise_fails_case() -> None:
    outcome = cases.run_case(make_case([{"op": "add", "states": ["Missing"]}]))

    assert outcome.status == "failed"
    assert "step raised StateError" in outcome.message


def test_expected_panic_passes() -> None:
    step = {"op": "add", "states": ["Missing"], "expect_panic": True}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "passed", outcome.describe()


def test_missing_panic_fails() -> None:
    step = {"op": "add", "states": ["A"], "expect_panic": True}

    outcome = cases.run_case(make_case([step]))

    assert outcome.status == "failed"
    assert "expected the step to raise" in outcome.message


def test_handler_actions_record_and_log() -> None:
    case = make_case(
        [
            {
                "op": "add",
                "states": ["A"],
                "args": {"n": 1, "ok": True},
                "expect_handler_log": [
                    "AEnter: args=n=1,ok=true",
                    "AState: add B -> queued:3",
                ],
            }
        ],
        handlers={"AEnter": "record_args", "AState": ["add B", "return false"]},
        expect={
            "active": ["A", "B"],
            "handler_calls_subsequences": [["AEnter", "AState", "BEnter"]],
        },
    )

    outcome = cases.run_case(case)

    assert outcome.status == "passed", outcome.describe()


def test_return_false_cancels() -> None:
    step = {"op": "add", "states": ["A"], "expect_result": "canceled"}
    case = make_case([step], handlers={"AEnter": "return false"})

    outcome = cases.run_case(case)

    assert outcome.status == "passed", outcome.describe()


def test_case_is_not_modified() -> None:
    case = make_case(
        [{"op": "add", "states": ["A"], "args": {}}],
        handlers={"AEnter": "set_arg key some value"},
    )
    before = json.dumps(case, sort_keys=True)

    cases.run_case(case)

    assert json.dumps(case, sort_keys=True) == before


def test_summary_line_format() -> None:
    assert cases.format_summary(3, 1) == "3 passed, 1 failed"
    assert cases.format_summary(3, 0, 2) == "3 passed, 0 failed, 2 skipped"


def test_run_cases_prints_failures_and_summary() -> None:
    passing = make_case([{"op": "add", "states": ["A"]}], id="runner.passing")
    failing = make_case([{"op": "nope"}], id="runner.failing")
    out = io.StringIO()

    status = cases.run_cases([passing, failing], out=out)

    lines = out.getvalue().splitlines()
    assert status == 1
    assert lines[0] == "FAIL runner.failing: 0: unknown op 'nope'"
    assert lines[-1] == "1 passed, 1 failed"


def test_run_cases_verbose_lists_passes() -> None:
    out = io.StringIO()

    status = cases.run_cases([make_case([])], verbose=True, out=out)

    assert status == 0
    assert out.getvalue().splitlines() == ["ok runner.sample", "1 passed, 0 failed"]


def test_invalid_file_exits_with_error(tmp_path: Any) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"format": "other", "version": 1, "cases": []}))

    status = cases.main([str(path)])

    assert status == 1


def test_runner_error_in_handler_fails() -> None:
    case = make_case(
        [{"op": "add", "states": ["A"]}], handlers={"AEnter": "record_ctx_done X"}
    )

    outcome = cases.run_case(case)

    assert outcome.status == "failed"
    assert outcome.where == "0: add"
    assert "action 'record_ctx_done X' failed" in outcome.message


def test_main_only_filters_cases(tmp_path: Any, capsys: Any) -> None:
    passing = make_case([], id="runner.passing")
    failing = make_case([{"op": "nope"}], id="runner.failing")
    data = {"format": "asyncmachine-cases", "version": 1, "cases": [passing, failing]}
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(data))

    status = cases.main([str(path), "--only", "runner.passing", "--verbose"])

    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        "ok runner.passing",
        "1 passed, 0 failed",
    ]

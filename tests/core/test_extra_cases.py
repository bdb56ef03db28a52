"""Run every case of tests/data/cases_extra.json as one test.

These cases were written from the specification, not recorded from the Go
reference. A case where the core knowingly differs from the specification is
marked xfail(strict=True) below, so the mark must be removed once the core is
changed to match it.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests import cases

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
EXTRA_FILE = DATA_DIR / "cases_extra.json"

# Case id -> why the core fails it; empty while the core matches every case.
KNOWN_DEVIATIONS: dict[str, str] = {}

CASES = cases.load_cases(str(EXTRA_FILE))


def test_deviations_name_existing_cases() -> None:
    unknown = sorted(set(KNOWN_DEVIATIONS) - {case["id"] for case in CASES})
    assert not unknown, f"KNOWN_DEVIATIONS names case ids not in the file: {unknown}"


def case_param(case: dict[str, Any]) -> Any:
    reason = KNOWN_DEVIATIONS.get(case["id"])
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", [case_param(case) for case in CASES])
def test_extra_case(case: dict[str, Any]) -> None:
    outcome = cases.run_case(case)
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    assert outcome.passed, f"{outcome.where}: {outcome.message}"

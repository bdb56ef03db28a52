"""Run every reference behaviour case of tests/data/cases.json as one test.

Where this project deliberately differs from the reference, a case of the same id in
tests/data/cases_corrections.json replaces the reference case.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from tests import cases

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
REFERENCE_FILE = DATA / "cases.json"
CORRECTIONS_FILE = DATA / "cases_corrections.json"


def load_effective_cases() -> list[dict[str, Any]]:
    """Return the reference cases, each replaced by its correction if there is one."""
    reference = cases.load_cases(str(REFERENCE_FILE))
    if not CORRECTIONS_FILE.exists():
        return reference

    corrections = {case["id"]: case for case in cases.load_cases(str(CORRECTIONS_FILE))}
    unknown = sorted(set(corrections) - {case["id"] for case in reference})
    if unknown:
        raise ValueError(
            f"{CORRECTIONS_FILE.name} corrects case ids that are not in "
            f"{REFERENCE_FILE.name}: {json.dumps(unknown)}"
        )
    return [corrections.get(case["id"], case) for case in reference]


CASES = load_effective_cases()


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case: dict[str, Any]) -> None:
    outcome = cases.run_case(case)
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    assert outcome.passed, f"{outcome.where}: {outcome.message}"

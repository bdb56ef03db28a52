"""Fixtures shared by the whole test suite."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Return the repository's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def reference_cases_path() -> Path:
    """Return the path of the reference behaviour cases (JSON)."""
    return REPO_ROOT / "tests" / "data" / "cases.json"

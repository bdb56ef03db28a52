"""The reference behaviour cases, run by tests.cases inside Pyodide."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.pyodide.harness import HARNESS_TIMEOUT_SECONDS, RunHarness, format_output

CASES_PATH = Path(__file__).resolve().parents[1] / "data" / "cases.json"

# The runner's closing line, optionally after one word and a colon.
SUMMARY_PATTERN = re.compile(
    r"(?:\w+: )?(?P<passed>\d+) passed, (?P<failed>\d+) failed"
    r"(?:, (?P<skipped>\d+) skipped)?"
)
VERSION_PATTERN = re.compile(
    r"^pyodide-harness: Python (?P<major>\d+)\.(?P<minor>\d+)\.\d+", re.MULTILINE
)


# The core must also work where JSPI is missing (Safari, for one), so the cases
# run once with JSPI and once without it.
@pytest.fixture(scope="module", params=[[], ["--no-jspi"]], ids=["jspi", "no-jspi"])
def cases_run(
    run_harness: RunHarness, request: pytest.FixtureRequest
) -> subprocess.CompletedProcess[str]:
    return run_harness([*request.param, str(CASES_PATH)])


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_pyodide_python_version(cases_run: subprocess.CompletedProcess[str]) -> None:
    version = VERSION_PATTERN.search(cases_run.stderr)
    assert version is not None, (
        f"the harness printed no Python version\n{format_output(cases_run)}"
    )

    version_info = (int(version["major"]), int(version["minor"]))
    assert version_info >= (3, 14), (
        f"Pyodide runs Python {version_info}, expected 3.14 or newer\n"
        f"{format_output(cases_run)}"
    )


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_pyodide_cases_exit_code(cases_run: subprocess.CompletedProcess[str]) -> None:
    assert cases_run.returncode == 0, format_output(cases_run)


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_pyodide_cases_none_failed(cases_run: subprocess.CompletedProcess[str]) -> None:
    lines = cases_run.stdout.strip().splitlines()
    assert lines, f"the runner printed nothing\n{format_output(cases_run)}"

    summary = SUMMARY_PATTERN.fullmatch(lines[-1].strip())
    assert summary is not None, (
        f"last line is not 'N passed, M failed'\n{format_output(cases_run)}"
    )
    assert int(summary["failed"]) == 0, format_output(cases_run)
    assert int(summary["passed"]) > 0, f"no case passed\n{format_output(cases_run)}"

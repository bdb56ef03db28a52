"""Fixtures that start the Pyodide harness (run_cases.mjs) with Node.js."""

import shutil
import subprocess
from collections.abc import Sequence

import pytest

from tests.pyodide.harness import (
    HARNESS_SCRIPT,
    HARNESS_TIMEOUT_SECONDS,
    PYODIDE_MANIFEST,
    RunHarness,
)


@pytest.fixture(scope="session")
def run_harness() -> RunHarness:
    """Return a function that runs the harness with arguments and captures output.

    The test fails, and does not skip, when Node.js or the npm package is
    missing, because `make install` provides both.
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node not found on PATH: install Node.js 18 or newer with npm, "
            "then run `make install`"
        )
    if not PYODIDE_MANIFEST.is_file():
        pytest.fail(
            f"npm package pyodide not found at {PYODIDE_MANIFEST.parent}: "
            "run `make install` in the repository root"
        )

    def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [node, str(HARNESS_SCRIPT), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HARNESS_TIMEOUT_SECONDS,
            check=False,
        )

    return run

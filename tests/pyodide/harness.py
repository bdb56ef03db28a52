"""Paths, limits and output formatting shared by the Pyodide harness tests."""

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
HARNESS_SCRIPT = HARNESS_DIR / "run_cases.mjs"
PYODIDE_MANIFEST = HARNESS_DIR / "node_modules" / "pyodide" / "package.json"

# Upper bound for one harness run: Pyodide starts in about 3 s here, and the
# reference cases add their own sleeps.
HARNESS_TIMEOUT_SECONDS = 600

RunHarness = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def format_output(result: subprocess.CompletedProcess[str]) -> str:
    """Format a harness run's exit code and output for an assertion message."""
    return (
        f"exit code: {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n"
        f"--- stderr ---\n{result.stderr}"
    )

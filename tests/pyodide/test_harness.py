"""The Pyodide harness itself, on a small repository tree made per test."""

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.pyodide.harness import HARNESS_TIMEOUT_SECONDS, RunHarness, format_output

# A runner module that uses a package from the tree's kernel/ directory, reads
# the file named by its argument, runs asyncio.run() and exits with code 3.
RUNNER_SOURCE = """\
import asyncio
import json
import os
import sys

import probepkg


async def read_value():
    await asyncio.sleep(0.001)
    return probepkg.VALUE


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        numbers = json.load(file)["numbers"]
    print(f"argv0={os.path.basename(sys.argv[0])}")
    print(f"cwd={os.getcwd()}")
    print(f"numbers={sum(numbers)}")
    print(f"value={asyncio.run(read_value())}")
    print("to stderr", file=sys.stderr)
    print("2 passed, 1 failed")
    return 3


if __name__ == "__main__":
    sys.exit(main())
"""


@pytest.fixture(scope="module")
def probe_run(
    run_harness: RunHarness, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("probe-repo")
    (root / "kernel" / "probepkg").mkdir(parents=True)
    (root / "kernel" / "probepkg" / "__init__.py").write_text("VALUE = 42\n")
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "probe_runner.py").write_text(textwrap.dedent(RUNNER_SOURCE))

    # The data file lies outside the tree, so the harness must copy it in.
    data_path = tmp_path_factory.mktemp("probe-data") / "numbers.json"
    data_path.write_text('{"numbers": [1, 2, 3]}')

    result = run_harness(
        ["--root", str(root), "--module", "tests.probe_runner", str(data_path)]
    )
    return root, result


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_harness_exit_code(
    probe_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = probe_run
    assert result.returncode == 3, format_output(result)


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_harness_forwards_stdout(
    probe_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    root, result = probe_run
    lines = result.stdout.splitlines()
    assert "argv0=probe_runner.py" in lines, format_output(result)
    assert f"cwd={root}" in lines, format_output(result)
    assert "numbers=6" in lines, format_output(result)
    assert "value=42" in lines, format_output(result)
    assert lines[-1] == "2 passed, 1 failed", format_output(result)


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_harness_forwards_stderr(
    probe_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = probe_run
    lines = result.stderr.splitlines()
    assert "to stderr" in lines, format_output(result)
    assert any(line.startswith("pyodide-harness: Python 3.") for line in lines), (
        format_output(result)
    )


@pytest.mark.timeout(HARNESS_TIMEOUT_SECONDS + 60)
def test_harness_rejects_missing_root(run_harness: RunHarness, tmp_path: Path) -> None:
    result = run_harness(["--root", str(tmp_path / "missing"), "cases.json"])
    assert result.returncode == 2, format_output(result)
    assert "is not a directory" in result.stderr, format_output(result)

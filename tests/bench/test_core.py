"""Smoke test of the peer benchmark: every engine does the expected work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.engines import ENGINES

WORKLOADS = ("flat", "parallel", "memory")


@pytest.mark.timeout(600)
def test_quick_run_every_engine_ok(repo_root: Path, tmp_path: Path) -> None:
    record_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.core", "--quick", "--json", str(record_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr

    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures["correct"] is True
    for workload in WORKLOADS:
        for engine in ENGINES:
            status = figures[workload][engine]["status"]
            assert status == "ok", f"{workload} {engine}: {status}"

    record = json.loads(record_path.read_text())
    assert len(record["raw"]) == len(WORKLOADS) * len(ENGINES)
    for result in record["raw"]:
        assert result["correct"] is True, result

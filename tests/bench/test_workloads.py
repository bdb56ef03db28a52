"""Tests of the benchmark workloads and of the engine adapters, in process."""

from __future__ import annotations

import pytest

from bench.engines import ENGINES, load_engine
from bench.workloads import (
    REJECT_EVERY,
    Counts,
    expected_counts,
    flat_targets,
    parallel_targets,
)


def test_flat_targets_skip_active_state() -> None:
    targets, final = flat_targets(500)
    active = 0
    for number, target in enumerate(targets, start=1):
        assert target != active
        assert 0 <= target < 20
        if number % REJECT_EVERY != 0:
            active = target
    assert final == [f"S{active}"]


def test_parallel_targets_skip_active_state() -> None:
    targets, final = parallel_targets(500)
    active = [0, 0, 0, 0]
    for number, (group, target) in enumerate(targets, start=1):
        assert target != active[group]
        assert 0 <= group < 4
        assert 0 <= target < 5
        if number % REJECT_EVERY != 0:
            active[group] = target
    assert final == sorted(f"G{g}S{k}" for g, k in enumerate(active))


def test_targets_same_for_same_seed() -> None:
    assert flat_targets(100) == flat_targets(100)
    assert flat_targets(100, seed=1) != flat_targets(100)


def test_counts_reject_every_tenth() -> None:
    counts = Counts()
    answers = [counts.enter_ok() for _ in range(20)]
    assert answers.count(False) == 2
    assert answers[9] is False
    assert answers[19] is False
    assert counts.enter_neg == 20


def test_expected_counts_subtract_rejected() -> None:
    assert expected_counts(25) == {
        "exit_neg": 25,
        "enter_neg": 25,
        "end": 23,
        "state": 23,
    }


@pytest.mark.parametrize("engine", list(ENGINES))
def test_adapter_flat_run_correct(engine: str) -> None:
    runner = load_engine(engine).build_flat(20)
    assert runner.active() == ["S0"]
    assert runner.counts.as_dict() == expected_counts(0)

    targets, final = flat_targets(300)
    runner.run(targets)
    assert runner.counts.as_dict() == expected_counts(300)
    assert runner.active() == final


@pytest.mark.parametrize("engine", list(ENGINES))
def test_adapter_parallel_run_correct(engine: str) -> None:
    runner = load_engine(engine).build_parallel(4, 5)
    assert runner.active() == ["G0S0", "G1S0", "G2S0", "G3S0"]

    targets, final = parallel_targets(300)
    runner.run(targets)
    assert runner.counts.as_dict() == expected_counts(300)
    assert runner.active() == final

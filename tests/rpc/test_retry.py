"""RetryPolicy: the backoff schedule and its argument checks."""

from __future__ import annotations

import re

import pytest

from asyncmachine.rpc import RetryPolicy


def test_delay_doubles_up_to_the_limit() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.1, max_backoff=0.5)
    assert [policy.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_delay_capped_past_float_range() -> None:
    policy = RetryPolicy(attempts=1_000_000, backoff=1e-300, max_backoff=3.0)
    assert policy.delay(1_025) == 3.0
    assert policy.delay(1_000_000) == 3.0


def test_zero_backoff_never_waits() -> None:
    policy = RetryPolicy(attempts=2_000, backoff=0.0, max_backoff=0.0)
    assert policy.delay(1) == 0.0
    assert policy.delay(2_000) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": -1}, "attempts must be an int >= 0"),
        ({"attempts": 1.5}, "attempts must be an int >= 0"),
        ({"backoff": -0.1}, "backoff must be >= 0"),
        ({"backoff": 2.0, "max_backoff": 1.0}, "max_backoff (1.0) must be >= backoff"),
    ],
)
def test_invalid_policy_names_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RetryPolicy(**kwargs)

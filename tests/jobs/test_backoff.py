"""Backoff: waits grow by the factor up to the cap, jitter takes off at most its share, Retry-After is a floor."""

from __future__ import annotations

import random

import pytest

from jobs.backoff import backoff_delay, deferral_delay


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0), (9, 5.0, 10.0)]
)
def test_each_failure_doubles_the_wait_up_to_the_cap_with_half_of_it_jittered(attempt, low, high):
    rng = random.Random(attempt)
    delays = [backoff_delay(attempt, base=2, cap=10, factor=2, jitter=0.5, rng=rng) for _ in range(200)]
    assert all(low <= delay <= high for delay in delays)
    assert max(delays) - min(delays) > (high - low) / 2, "the waits are spread, not all the same"


def test_no_jitter_gives_the_exponential_itself_and_a_factor_sets_its_growth():
    assert backoff_delay(3, base=1, cap=100, factor=3, jitter=0) == 9


def test_a_retry_after_is_a_floor_even_above_the_cap():
    assert backoff_delay(1, base=2, cap=10, factor=2, jitter=0.5, retry_after=30) == 30
    assert 1 <= backoff_delay(1, base=2, cap=10, factor=2, jitter=0.5, retry_after=0.5) <= 2


def test_a_handed_back_wait_comes_back_a_little_later_never_sooner():
    rng = random.Random(7)
    long_waits = [deferral_delay(100, jitter=0.1, min_jitter=1, rng=rng) for _ in range(200)]
    assert all(100 <= delay <= 110 for delay in long_waits)
    short_waits = [deferral_delay(2, jitter=0.1, min_jitter=1, rng=rng) for _ in range(200)]
    assert all(2 <= delay <= 3 for delay in short_waits)
    assert max(short_waits) - min(short_waits) > 0.5

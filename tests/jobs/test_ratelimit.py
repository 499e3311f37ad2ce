"""Shared provider limits on a real Redis: rate, concurrency with leases, and a cool-down for everyone."""

from __future__ import annotations

import time

import pytest

from jobs.ratelimit import ProviderLimiter, ProviderLimits


@pytest.fixture
def limiter_for(redis_conn):
    def build(**limits) -> ProviderLimiter:
        return ProviderLimiter(redis_conn, "sim", ProviderLimits(**limits))

    return build


def test_rate_is_held_to_requests_per_second(limiter_for):
    limiter = limiter_for(requests_per_second=20, concurrency=100)
    granted = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        wait = limiter.try_acquire(f"h{granted}")
        if wait == 0:
            granted += 1
        else:
            assert 0 < wait <= 0.06
            time.sleep(wait)
    assert 10 <= granted <= 21  # never more than 1 (burst) + 20 in the second


def test_concurrency_slots_are_shared_and_released(limiter_for):
    limiter = limiter_for(requests_per_second=1000, burst=10, concurrency=2)
    assert limiter.try_acquire("a") == 0 and limiter.try_acquire("b") == 0
    assert limiter.try_acquire("c") > 0  # both slots taken, by any worker
    limiter.release("a")
    assert limiter.try_acquire("c") == 0
    assert limiter.in_flight() == 2


def test_a_dead_holder_cannot_leak_a_slot(limiter_for):
    limiter = limiter_for(requests_per_second=1000, burst=10, concurrency=1, lease_seconds=0.3)
    assert limiter.try_acquire("worker-that-dies") == 0
    assert 0 < limiter.try_acquire("next") <= 0.3
    time.sleep(0.35)
    assert limiter.try_acquire("next") == 0


def test_one_429_cools_everyone_down_and_never_shortens(limiter_for):
    first = limiter_for(requests_per_second=1000, burst=10, concurrency=10)
    other_worker = limiter_for(requests_per_second=1000, burst=10, concurrency=10)
    first.cool_down(1.0)
    assert first.cool_down(0.2) > 0.8  # a shorter Retry-After does not cut it short
    wait = other_worker.try_acquire("x")
    assert 0.8 < wait <= 1.0
    time.sleep(wait + 0.02)
    assert other_worker.try_acquire("x") == 0

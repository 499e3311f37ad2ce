"""Shared provider limits on a real Redis: rate, concurrency with leases, and a cool-down for everyone."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from jobs.ratelimit import Grant, ProviderLimiter, ProviderLimits
from simulator.log_analysis import most_in_any_window, token_bucket_refusals


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


def acquire_concurrently(redis_conn, limits: ProviderLimits, callers: int, grants: int, sleep=time.sleep):
    """`callers` threads, each with its own limiter (as separate workers have), take `grants` calls in all,
    releasing each slot at once; returns every Grant."""
    taken: list[Grant] = []
    lock = threading.Lock()

    def call(number: int) -> None:
        limiter = ProviderLimiter(redis_conn, "sim", limits)
        n = 0
        while True:
            with lock:
                if len(taken) >= grants:
                    return
            grant = limiter.acquire(f"c{number}:{n}", max_wait=30, sleep=sleep)
            limiter.release(grant.holder)
            with lock:
                taken.append(grant)
            n += 1

    threads = [threading.Thread(target=call, args=(number,)) for number in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken


def sent_at(grants: list[Grant]) -> list[float]:
    """When each call was let go, on Redis's clock: its booked time plus how late it was confirmed."""
    return sorted(grant.send_at + grant.lateness for grant in grants)


def test_concurrent_callers_use_98_percent_of_the_rate_and_never_exceed_it(redis_conn):
    limits = ProviderLimits(requests_per_second=20, concurrency=10)
    grants = acquire_concurrently(redis_conn, limits, callers=8, grants=100)
    times = sent_at(grants)

    # What the simulator (a token bucket of 2) and a sliding one-second window would have refused: nothing.
    assert token_bucket_refusals(times, rate=20, burst=2) == 0
    assert most_in_any_window(times, 1.0) <= 20 + 1
    # No two calls are let go closer than half an interval.
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.05 - 0.025
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.98 * 20, f"{achieved:.2f} requests/s"


def test_a_caller_that_wakes_up_late_delays_the_next_call_instead_of_crowding_it(redis_conn):
    limits = ProviderLimits(requests_per_second=20, concurrency=10)
    sleeps = itertools.count()

    def oversleeping(seconds: float) -> None:
        # Every third sleep overruns by two intervals, as a thread starved of CPU would.
        time.sleep(seconds + (0.1 if next(sleeps) % 3 == 0 else 0.0))

    grants = acquire_concurrently(redis_conn, limits, callers=4, grants=40, sleep=oversleeping)

    assert sum(grant.lateness > 0.05 for grant in grants) >= 5  # woke up after the next call's booked time
    times = sent_at(grants)
    assert token_bucket_refusals(times, rate=20, burst=2) == 0
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.05 - 0.025


def test_a_cool_down_that_begins_while_a_call_waits_sends_it_after_the_cool_down(redis_conn):
    limits = ProviderLimits(requests_per_second=2, concurrency=10)
    limiter = ProviderLimiter(redis_conn, "sim", limits)
    other_worker = ProviderLimiter(redis_conn, "sim", limits)
    limiter.release(limiter.acquire("first", max_wait=5).holder)
    cooled = []

    def sleep_then_429(seconds: float) -> None:
        if not cooled:  # a 429 reaches another worker while this call sleeps towards its booked time
            cooled.append(other_worker.cool_down(1.0))
        time.sleep(seconds)

    grant = limiter.acquire("second", max_wait=5, sleep=sleep_then_429)
    assert grant.rebooked == 1
    assert other_worker.cooling_for() == 0.0

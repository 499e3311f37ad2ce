"""Waiting in tests: poll a condition until a deadline, never sleep a fixed time and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition never held",
) -> T:
    """Call `predicate` until it returns something truthy, and return that; fail with `message` (a string,
    or a callable for one that describes the state at the deadline) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message() if callable(message) else message} (waited {timeout:g} s)")
        time.sleep(interval)


def drain_until(
    done: Callable[[], object],
    timeout: float = 20.0,
    message: str | Callable[[], str] = "the queue never got there",
) -> None:
    """Run burst workers until `done()`: retries are scheduled a moment later, so one burst is not enough."""
    from tests.conftest import run_burst_worker

    def drained() -> bool:
        run_burst_worker()
        return bool(done())

    wait_until(drained, timeout, 0.05, message)

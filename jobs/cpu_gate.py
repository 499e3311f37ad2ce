"""One CPU turn per worker process, handed back while a thread waits on a provider.

A worker with several threads (PIXELMILL_WORKER_THREADS) keeps several provider calls in flight,
but its local work (decode, operations, render, encode) must not run in all of them at once: the
machine has one core per worker process, and every thread rendering a 24-megapixel source would hold
its own pixels. So a task's attempt takes the process's turn for everything it does locally and gives
it back for the length of a remote call (the rate-limit wait included); whichever thread is waiting
takes it meanwhile. With one thread the turn is always free and costs one uncontended lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_turn = threading.Lock()
_holding = threading.local()


def holding() -> bool:
    """Whether the calling thread holds the turn now."""
    return getattr(_holding, "turn", False)


def waited() -> float:
    """Seconds the calling thread's current (or last) turn spent waiting for the lock, re-takes included."""
    return getattr(_holding, "waited", 0.0)


def _take() -> None:
    started = time.perf_counter()
    _turn.acquire()
    _holding.waited = waited() + time.perf_counter() - started


@contextmanager
def cpu_turn() -> Iterator[None]:
    """Hold the process's CPU turn for the block (re-entrant: a nested call holds it already)."""
    if holding():
        yield
        return
    # The flag goes up before the lock is taken and down before it is given back: a job timeout
    # (an exception raised into the thread between two steps) must never leave the turn taken for good.
    _holding.turn = True
    _holding.waited = 0.0
    try:
        _take()
        yield
    finally:
        if holding():
            _holding.turn = False
            _turn.release()


@contextmanager
def cpu_released() -> Iterator[None]:
    """Give the turn back for a block that only waits (a provider call), and take it again after."""
    if not holding():
        yield
        return
    _turn.release()
    _holding.turn = False
    try:
        yield
    finally:
        _holding.turn = True
        _take()

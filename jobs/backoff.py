"""How long to wait before trying again: exponential backoff with jitter, and the spread of a handed-back wait."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float,
    jitter: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before `attempt + 1`, given that `attempt` (1-based) just failed.

    The wait grows as base·factor^(attempt-1) up to `cap`; a random share of at most `jitter` of it is
    taken off (AWS architecture blog, "Exponential Backoff And Jitter"), which spreads a burst of failures
    so the retries do not arrive together, while the rest keeps a retry from coming back almost at once.
    A Retry-After the other side sent is a floor, even above the cap: it said when it can take more.
    """
    exponential = min(cap, base * factor ** max(0, attempt - 1))
    delay = (rng or random).uniform(exponential * (1 - jitter), exponential)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def deferral_delay(
    wait: float, *, jitter: float, min_jitter: float, rng: random.Random | None = None
) -> float:
    """`wait` plus a random extra of up to `jitter` of it (at least `min_jitter` seconds' worth), so the
    tasks handed back by one rate limit do not all come back at the same instant."""
    return wait + (rng or random).uniform(0, max(min_jitter, wait * jitter))

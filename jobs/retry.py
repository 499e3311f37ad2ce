"""Retry policy: exponential backoff with full jitter, never sooner than a provider's Retry-After."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before `attempt + 1`, given that `attempt` (1-based) just failed.

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads a
    burst of failures so the retries do not arrive together; the lower bound of half
    the exponential keeps a retry from coming back almost at once.
    """
    exponential = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = (rng or random).uniform(exponential / 2, exponential)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay

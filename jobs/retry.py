"""Retry policy: exponential backoff with full jitter, never sooner than a provider's Retry-After; and what an
unexpected exception means for a retry."""

from __future__ import annotations

import random

from django.db import DatabaseError, connections

from jobs.errors import TransientError


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


def transient_for_unexpected(exc: Exception) -> TransientError:
    """An exception no step anticipated: worth another attempt, with a reason a person can read.

    A database that restarted or dropped the connection mid-attempt is named as such, and the broken
    connections are closed first, so that recording this very failure opens a fresh one.
    """
    if isinstance(exc, DatabaseError):
        connections.close_all()
        return TransientError(
            "The database was briefly unreachable; this will be tried again.", code="database_unavailable"
        )
    return TransientError(f"Unexpected error: {type(exc).__name__}: {exc}", code="internal_error")

"""Retry policy: exponential backoff with full jitter, never sooner than a provider's Retry-After; and which
unexpected exceptions are worth another attempt."""

from __future__ import annotations

import errno
import random

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
    connections,
)
from redis import exceptions as redis_errors
from rq.timeouts import JobTimeoutException

from jobs.errors import InternalError, StepError, TransientError

# Redis restarting, failing over (a replica is read-only until promoted) or loading its data set.
REDIS_INTERRUPTIONS = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)
# Errors in the query we sent, not in the database's health: the same query fails the same way again.
DATABASE_BUGS = (IntegrityError, ProgrammingError, DataError, NotSupportedError)
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,  # disk full: someone frees space, or the cleanup runs
        errno.EDQUOT,
        errno.EIO,
        errno.ESTALE,  # NFS handle gone stale after a server restart
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ENOMEM,
        errno.EMFILE,  # out of file descriptors: this process, for now
        errno.ENFILE,
    }
)


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


def error_for_unexpected(exc: Exception, *, doing: str) -> StepError:
    """An exception no step anticipated, as the error to record: an interruption from outside our code
    retries; anything else is a bug that would fail the same way again, so it fails now with a reference.

    `doing` completes "Something went wrong on our side while …" (e.g. "rendering this image").
    """
    if isinstance(exc, MemoryError):
        # Usually the worker's neighbours (other jobs, other threads) took the memory: another worker,
        # or this one later, has room. A single image too big to fit is stopped by PIXELMILL_MAX_PIXELS.
        return TransientError(
            "The worker ran short of memory; this will be tried again.", code="out_of_memory"
        )
    if isinstance(exc, JobTimeoutException):
        return TransientError("The work took longer than its time limit.", code="timeout")
    if isinstance(exc, REDIS_INTERRUPTIONS):
        return TransientError(
            "The queue was briefly unreachable; this will be tried again.", code="queue_unavailable"
        )
    if isinstance(exc, DatabaseError) and not isinstance(exc, DATABASE_BUGS):
        # A database that restarted or dropped the connection: close the broken connections first, so
        # that recording this very failure opens a fresh one.
        connections.close_all()
        return TransientError(
            "The database was briefly unreachable; this will be tried again.", code="database_unavailable"
        )
    if isinstance(exc, OSError) and is_storage_interruption(exc):
        return TransientError(
            "File storage was briefly unavailable; this will be tried again.", code="storage_unavailable"
        )
    return InternalError.from_exception(exc, doing=doing)


def is_storage_interruption(exc: OSError) -> bool:
    """A full disk, an NFS or network-storage blip: outside our code and over by a later attempt.

    Told apart by errno: Pillow's own OSErrors ("cannot identify image file", "encoder error -2") carry
    none, and a missing file (ENOENT) or a denied one (EACCES) stays missing or denied however often it is
    tried, so those are bugs or setup, not interruptions.
    """
    return isinstance(exc, (ConnectionError, TimeoutError)) or exc.errno in TRANSIENT_ERRNOS

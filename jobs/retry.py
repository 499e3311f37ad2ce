"""Retry policy of attempts: when the next one is due (from settings), and which errors are worth one."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
    connections,
    transaction,
)
from django.utils import timezone
from redis import exceptions as redis_errors
from rq.timeouts import JobTimeoutException

from jobs.backoff import backoff_delay, deferral_delay
from jobs.errors import InternalError, PermanentError, StepError, TransientError
from jobs.leases import LeaseKeeper
from jobs.queueing import schedule_attempt

if TYPE_CHECKING:
    from dashboard.models import AttemptModel

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


def next_attempt_delay(attempt: int, *, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1` of a task, generation or URL import, once `attempt` failed
    (PIXELMILL_RETRY_BASE_SECONDS / _MAX_SECONDS, PIXELMILL_BACKOFF_FACTOR / _JITTER)."""
    return backoff_delay(
        attempt,
        base=settings.PIXELMILL_RETRY_BASE_SECONDS,
        cap=settings.PIXELMILL_RETRY_MAX_SECONDS,
        factor=settings.PIXELMILL_BACKOFF_FACTOR,
        jitter=settings.PIXELMILL_BACKOFF_JITTER,
        retry_after=retry_after,
    )


def handed_back_delay(wait: float) -> float:
    """Seconds before an attempt handed back to wait (a rate limit, shared limits) runs again
    (PIXELMILL_DEFERRAL_JITTER / _MIN_JITTER_SECONDS)."""
    return deferral_delay(
        wait,
        jitter=settings.PIXELMILL_DEFERRAL_JITTER,
        min_jitter=settings.PIXELMILL_DEFERRAL_MIN_JITTER_SECONDS,
    )


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
    if (isinstance(exc, OSError) and is_storage_interruption(exc)) or is_bucket_interruption(exc):
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


# What an S3-compatible store answers when it is overloaded or briefly unwell (5xx come with any code).
BUCKET_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "ServiceUnavailable", "Throttling"})


def is_bucket_interruption(exc: BaseException) -> bool:
    """An object store (PIXELMILL_STORAGE=s3) that did not answer, dropped the connection, asked to slow
    down or failed with a 5xx: over by a later attempt. A missing key or a denied bucket is not."""
    # botocore is imported only when the storage is a bucket: if it is not loaded, this is not its error.
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return False
    # boto3's transfers re-raise a ClientError as their own error (S3UploadFailedError) while handling it.
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, (botocore.HTTPClientError, botocore.ConnectionError)):
            return True
        if isinstance(error, botocore.ClientError):
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return status >= 500 or error.response.get("Error", {}).get("Code") in BUCKET_RETRY_CODES
    return False


def record_failure(row: AttemptModel, attempt: int, error: StepError, started: float) -> str:
    """End a failed attempt of an import (by URL, or of a deferred upload): a permanent error ends the row
    with its reason; a transient one retries with backoff until the attempts run out."""
    permanent = isinstance(error, PermanentError)
    message = f"{error.message[:1].upper()}{error.message[1:]}"
    if not message.endswith("."):  # the fetcher's reasons are clauses; ours are already sentences
        message += "."
    if permanent or attempt - row.deferrals >= row.max_attempts:
        row.mark_failed(attempt, code=error.code, message=message, permanent=permanent)
        outcome = "failed" if permanent else "dead"
        row.log_attempt(attempt, outcome=outcome, started=started, error=error)
        return outcome
    delay = next_attempt_delay(attempt)
    at = timezone.now() + timedelta(seconds=delay)
    if row.requeue(attempt, at=at, code=error.code, message=message):
        transaction.on_commit(lambda: schedule_attempt(row.pk, attempt + 1, at, row.job_kind))
    row.log_attempt(attempt, outcome="retry", started=started, error=error, retry_in=delay)
    return "retry"


_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Failed:
    """An import attempt that ended in a recorded failure: "retry", "failed" or "dead"."""

    outcome: str


def run_import_attempt(
    row: AttemptModel, attempt: int, started: float, work: Callable[[], _Result], *, doing: str
) -> _Result | Failed:
    """Run an import's `work` under the row's lease and return its result, or the outcome once a failure is
    recorded. As for recipe tasks, an interruption retries and a bug fails at once with a ref staff can look
    up in the log."""
    try:
        with LeaseKeeper(lambda: row.heartbeat(attempt), f"{row.attempt_log.key}-{row.pk}"):
            return work()
    except StepError as error:
        return Failed(record_failure(row, attempt, error, started))
    except Exception as exc:
        unexpected = error_for_unexpected(exc, doing=doing)
        logging.getLogger(row.attempt_log.logger).exception(
            "unexpected error",
            extra={row.attempt_log.key: row.pk, "attempt": attempt, "error_ref": unexpected.ref},
        )
        return Failed(record_failure(row, attempt, unexpected, started))

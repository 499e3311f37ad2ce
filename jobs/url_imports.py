"""RQ entry point for imports by URL: each URL is downloaded by a worker, never inside a web request.

A pasted list of 2,000 URLs would hold a web request for as long as the slowest servers take; here each URL
is a `UrlImport` row with numbered attempts, like a recipe task: claimed by a conditional UPDATE, kept
alive by a lease, retried with backoff when the server may come back (timeouts, refused connections, 5xx,
429), failed at once with the reason when it cannot (a private address, a 404, not an image), and taken
back by the reconciler when its worker or its job is lost.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from dashboard.intake import IncomingFile, sanitize_display_name, store_source
from dashboard.models import SourceImage, UrlImport
from jobs.errors import PermanentError, StepError
from jobs.leases import LeaseKeeper, lease_expiry
from jobs.queueing import URL_IMPORTS, schedule_attempt
from jobs.retry import error_for_unexpected, next_attempt_delay
from jobs.url_fetcher import fetch_image

logger = logging.getLogger("pixelmill.url_imports")


def import_url_task(import_id: int, attempt: int) -> str:
    """Run one attempt of one URL import; a duplicate or stale delivery returns without doing anything."""
    claimed = UrlImport.objects.filter(
        pk=import_id, state=UrlImport.State.QUEUED, attempts=attempt - 1
    ).update(state=UrlImport.State.RUNNING, attempts=attempt, lease_expires_at=lease_expiry())
    if not claimed:
        return "skipped"
    row = UrlImport.objects.select_related("campaign").get(pk=import_id)
    started = time.perf_counter()
    try:
        with LeaseKeeper(lambda: running(import_id, attempt), f"url-import-{import_id}"):
            fetched = fetch_image(row.url)
            source = store_source(
                row.campaign,
                IncomingFile(sanitize_display_name(fetched.name), fetched.data),
                SourceImage.Origin.URL,
            )
    except StepError as error:
        return record_failure(row, attempt, error, started)
    except Exception as exc:
        # As for recipe tasks: an interruption retries, a bug fails now with a ref staff can look up.
        error = error_for_unexpected(exc, doing="importing this URL")
        logger.exception(
            "unexpected error", extra={"url_import": import_id, "attempt": attempt, "error_ref": error.ref}
        )
        return record_failure(row, attempt, error, started)
    duplicate = source is None
    if duplicate:
        # The campaign already held these bytes: nothing to add, and nothing wrong either.
        sha256 = hashlib.sha256(fetched.data).hexdigest()
        source = SourceImage.objects.filter(campaign=row.campaign, sha256=sha256).first()
    running(import_id, attempt).update(
        state=UrlImport.State.SUCCEEDED,
        finished_at=timezone.now(),
        lease_expires_at=None,
        next_attempt_at=None,
        error_code="",
        error_message="",
        source=source,
        duplicate=duplicate,
    )
    log(row, attempt, "succeeded", started)
    return "succeeded"


def running(import_id: int, attempt: int):
    return UrlImport.objects.filter(pk=import_id, state=UrlImport.State.RUNNING, attempts=attempt)


def record_failure(row: UrlImport, attempt: int, error: StepError, started: float) -> str:
    """A permanent error ends the import with its reason; a transient one retries until the attempts run out."""
    permanent = isinstance(error, PermanentError)
    message = f"{error.message[:1].upper()}{error.message[1:]}"
    if not message.endswith("."):  # the fetcher's reasons are clauses; ours are already sentences
        message += "."
    if permanent or attempt - row.deferrals >= row.max_attempts:
        running(row.pk, attempt).update(
            state=UrlImport.State.FAILED if permanent else UrlImport.State.DEAD,
            finished_at=timezone.now(),
            lease_expires_at=None,
            next_attempt_at=None,
            error_code=error.code[:40],
            error_message=message,
        )
        outcome = "failed" if permanent else "dead"
        log(row, attempt, outcome, started, error)
        return outcome
    delay = next_attempt_delay(attempt)
    at = timezone.now() + timedelta(seconds=delay)
    if running(row.pk, attempt).update(
        state=UrlImport.State.QUEUED,
        queued_at=timezone.now(),
        next_attempt_at=at,
        lease_expires_at=None,
        error_code=error.code[:40],
        error_message=message,
    ):
        transaction.on_commit(lambda: schedule_attempt(row.pk, attempt + 1, at, URL_IMPORTS))
    log(row, attempt, "retry", started, error, retry_in=delay)
    return "retry"


def log(
    row: UrlImport,
    attempt: int,
    outcome: str,
    started: float,
    error: StepError | None = None,
    retry_in: float | None = None,
) -> None:
    logger.info(
        "url import finished",
        extra={
            "url_import": row.pk,
            "campaign": row.campaign_id,
            "job_id": URL_IMPORTS.job_id(row.pk, attempt),
            "outcome": outcome,
            "error_code": error.code if error else None,
            "error_ref": error.ref if error else None,
            "execution_time_ms": round((time.perf_counter() - started) * 1000, 1),
            "retry_in": round(retry_in, 2) if retry_in is not None else None,
        },
    )

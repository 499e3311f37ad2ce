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

from dashboard.intake import IncomingFile, sanitize_display_name, store_source
from dashboard.models import SourceImage, UrlImport
from jobs.errors import StepError
from jobs.leases import LeaseKeeper
from jobs.retry import error_for_unexpected, record_failure
from jobs.url_fetcher import fetch_image

logger = logging.getLogger("pixelmill.url_imports")


def import_url_task(import_id: int, attempt: int) -> str:
    """Run one attempt of one URL import; a duplicate or stale delivery returns without doing anything."""
    if not UrlImport.claim(import_id, attempt):
        return "skipped"
    row = UrlImport.objects.select_related("campaign").get(pk=import_id)
    started = time.perf_counter()
    try:
        with LeaseKeeper(lambda: row.heartbeat(attempt), f"url-import-{import_id}"):
            fetched = fetch_image(row.url)
            source = store_source(
                row.campaign,
                IncomingFile.from_bytes(sanitize_display_name(fetched.name), fetched.data),
                SourceImage.Origin.URL,
            )
    except StepError as error:
        return record_failure(row, attempt, error, started)
    except Exception as exc:
        # As for recipe tasks: an interruption retries, a bug fails now with a ref staff can look up.
        unexpected = error_for_unexpected(exc, doing="importing this URL")
        logger.exception(
            "unexpected error",
            extra={"url_import": import_id, "attempt": attempt, "error_ref": unexpected.ref},
        )
        return record_failure(row, attempt, unexpected, started)
    duplicate = source is None
    if duplicate:
        # The campaign already held these bytes: nothing to add, and nothing wrong either.
        sha256 = hashlib.sha256(fetched.data).hexdigest()
        source = SourceImage.objects.filter(campaign=row.campaign, sha256=sha256).first()
    row.mark_succeeded(attempt, source=source, duplicate=duplicate)
    row.log_attempt(attempt, outcome="succeeded", started=started)
    return "succeeded"

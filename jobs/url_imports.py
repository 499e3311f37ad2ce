"""RQ entry point for imports by URL: each URL is downloaded by a worker, never inside a web request.

A pasted list of 2,000 URLs would hold a web request for as long as the slowest servers take; here each URL
is a `UrlImport` row with numbered attempts, like a recipe task: claimed by a conditional UPDATE, kept
alive by a lease, retried with backoff when the server may come back (timeouts, refused connections, 5xx,
429), failed at once with the reason when it cannot (a private address, a 404, not an image), and taken
back by the reconciler when its worker or its job is lost.
"""

from __future__ import annotations

import hashlib
import time

from dashboard.intake import IncomingFile, sanitize_display_name, store_source
from dashboard.models import SourceImage, UrlImport
from jobs.retry import Failed, run_import_attempt
from jobs.url_fetcher import fetch_image


def import_url_task(import_id: int, attempt: int) -> str:
    """Run one attempt of one URL import; a duplicate or stale delivery returns without doing anything."""
    if not UrlImport.claim(import_id, attempt):
        return "skipped"
    row = UrlImport.objects.select_related("campaign").get(pk=import_id)
    started = time.perf_counter()

    def fetch_and_store() -> tuple[bytes, SourceImage | None]:
        fetched = fetch_image(row.url)
        name = sanitize_display_name(fetched.name)
        stored = store_source(
            row.campaign, IncomingFile.from_bytes(name, fetched.data), SourceImage.Origin.URL
        )
        return fetched.data, stored

    result = run_import_attempt(row, attempt, started, fetch_and_store, doing="importing this URL")
    if isinstance(result, Failed):
        return result.outcome
    data, source = result
    duplicate = source is None
    if duplicate:
        # The campaign already held these bytes: nothing to add, and nothing wrong either.
        sha256 = hashlib.sha256(data).hexdigest()
        source = SourceImage.objects.filter(campaign=row.campaign, sha256=sha256).first()
    row.mark_succeeded(attempt, source=source, duplicate=duplicate)
    row.log_attempt(attempt, outcome="succeeded", started=started)
    return "succeeded"

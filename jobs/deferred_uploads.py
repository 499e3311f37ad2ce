"""RQ entry point for uploads too heavy for a web request: a worker unpacks the zip or checks the large image.

The web request only stores the file as it was sent (`dashboard.intake.import_uploads`); here each file it
holds is decoded, added, found to be a duplicate or refused with its reason, and the outcome of every file
is kept on the `DeferredUpload` row, where the campaign page's upload results read it. Like a URL import, the
row has numbered attempts: claimed by a conditional UPDATE, kept alive by a lease, retried when storage or the
database were briefly away, and taken back by the reconciler when its worker or its job is lost.
"""

from __future__ import annotations

import logging
import time

from django.core.files.storage import default_storage

from dashboard.intake import RESULT_ROWS, import_deferred
from dashboard.models import DeferredUpload
from jobs.retry import Failed, run_import_attempt

logger = logging.getLogger("pixelmill.deferred_uploads")


def import_deferred_upload_task(upload_id: int, attempt: int) -> str:
    """Run one attempt of bringing in a stored upload; a duplicate or stale delivery does nothing."""
    if not DeferredUpload.claim(upload_id, attempt):
        return "skipped"
    row = DeferredUpload.objects.select_related("campaign").get(pk=upload_id)
    started = time.perf_counter()
    report = run_import_attempt(
        row, attempt, started, lambda: import_deferred(row), doing="bringing in this upload"
    )
    if isinstance(report, Failed):
        outcome = report.outcome
    else:
        if not row.mark_succeeded(attempt, results=report.as_dict(limit=RESULT_ROWS)):
            return "taken back"  # the reconciler gave this attempt up; the next one has the file
        row.log_attempt(
            attempt, outcome="succeeded", started=started, added=len(report.accepted),
            duplicates=len(report.duplicates), refused=len(report.refused),
        )  # fmt: skip
        outcome = "succeeded"
    if outcome in ("succeeded", "failed"):
        # The file as sent was only a way in: its images are stored on their own now, or never will be.
        delete_stored(row)
    return outcome


def delete_stored(row: DeferredUpload) -> None:
    if not row.file.name:
        return
    try:
        default_storage.delete(row.file.name)
    except OSError:
        logger.warning("could not delete a deferred upload's file", extra={"deferred_upload": row.pk})
        return
    DeferredUpload.objects.filter(pk=row.pk).update(file="")

"""The reconciler: the database says what should be running, Redis is only transport; repair the difference.

Every kind of work Pixelmill runs (recipe tasks, generations from prompts, imports by URL, uploads handed to
the workers) is a row with numbered attempts, claimed by a conditional UPDATE. Two things can leave such a
row stranded:

- **worker lost**: the row is `running` but its lease expired, because the worker that held it died
  (SIGKILL, OOM, a machine gone) and nobody renews it any more;
- **queue lost**: the row is `queued` but the job that would run it is gone from Redis (emptied or
  restarted without persistence), failed there before the claim (a work-horse killed early), or
  "started" by a worker whose heartbeat went silent.

Either way the stranded attempt counts as an attempt, and the next one goes to the front of the queue:
it was waiting longest. A row past its last attempt is `dead` with the reason, and can be requeued from
the failures page. A late or duplicate job for the counted attempt is harmless: its claim finds the
attempt number moved on and does nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.job import Job

from dashboard.models import AttemptModel, AttemptQuerySet, DeferredUpload, Generation, Task, UrlImport
from jobs.queueing import CONTROL_QUEUE, PROCESS_QUEUE, enqueue_attempts, missing_attempts
from jobs.telemetry import record_repairs

logger = logging.getLogger("pixelmill.reconciler")
BATCH = 1000


@dataclass(frozen=True)
class AttemptRows:
    """One kind of row with numbered attempts: its model, and what to say when one is stranded."""

    name: str
    model: type[AttemptModel]
    worker_lost: str
    queue_lost: str
    # Called with a campaign id once a row of that campaign became dead (a run may have just finished).
    on_dead: Callable[[int], None] | None = None


def announce_run_finished(campaign_id: int) -> None:
    from jobs.tasks import announce_if_run_finished

    transaction.on_commit(lambda: announce_if_run_finished(campaign_id))


KINDS = (
    AttemptRows(
        "tasks",
        Task,
        worker_lost="The worker processing this image stopped before finishing (worker lost).",
        queue_lost="The queue lost this image's job, e.g. when Redis restarted empty (queue lost).",
        on_dead=announce_run_finished,
    ),
    AttemptRows(
        "generations",
        Generation,
        worker_lost="The worker generating these images stopped before finishing (worker lost).",
        queue_lost="The queue lost this prompt's job, e.g. when Redis restarted empty (queue lost).",
        on_dead=announce_run_finished,
    ),
    AttemptRows(
        "url_imports",
        UrlImport,
        worker_lost="The worker downloading this URL stopped before finishing (worker lost).",
        queue_lost="The queue lost this URL's job, e.g. when Redis restarted empty (queue lost).",
    ),
    AttemptRows(
        "deferred_uploads",
        DeferredUpload,
        worker_lost="The worker bringing in this upload stopped before finishing (worker lost).",
        queue_lost="The queue lost this upload's job, e.g. when Redis restarted empty (queue lost).",
    ),
)


def reconcile_task() -> dict[str, int]:
    """RQ entry point (cron, control queue): reconcile every kind of work; returns what was repaired."""
    now = timezone.now()
    report: dict[str, int] = {"scheduled_released": release_overdue_scheduled_jobs()}
    for rows in KINDS:
        for outcome, count in reconcile(rows, now).items():
            key = outcome if rows.model is Task else f"{rows.name}_{outcome}"
            report[key] = count
    record_repairs(report)
    if any(report.values()):
        logger.warning("reconciled", extra=report)
    return report


def release_overdue_scheduled_jobs() -> int:
    """Move scheduled jobs (retries after a backoff, webhook tries) that are long overdue onto their queues.

    RQ releases them from one worker's scheduler, holding a lock; when that worker is killed, the others
    only try to take the lock over at their next maintenance, up to ten minutes later. Meanwhile nothing
    is lost but everything waits, so the reconciler does the scheduler's work for what is overdue. If the
    scheduler releases the same job a moment later, the second delivery's claim does nothing.
    """
    overdue_before = time.time() - settings.PIXELMILL_RECONCILE_GRACE_SECONDS
    released = 0
    for name in (PROCESS_QUEUE, CONTROL_QUEUE):
        queue = django_rq.get_queue(name)
        registry = queue.scheduled_job_registry
        job_ids = registry.get_jobs_to_schedule(overdue_before)
        if not job_ids:
            continue
        jobs = Job.fetch_many(job_ids, connection=queue.connection)
        with queue.connection.pipeline() as pipe:
            for job_id, job in zip(job_ids, jobs, strict=True):
                if job is not None:
                    queue.enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                    released += 1
                registry.remove(job_id, pipeline=pipe)
            pipe.execute()
    return released


def reconcile(rows: AttemptRows, now: datetime) -> dict[str, int]:
    report = {"worker_lost": 0, "queue_lost": 0, "dead": 0}
    expired = rows.model.objects.lease_expired(now)
    strand(rows, list(stranded_values(expired, lost_attempt=0)), now, report, code="worker_lost")

    grace = timedelta(seconds=settings.PIXELMILL_RECONCILE_GRACE_SECONDS)
    waiting = rows.model.objects.waiting_since(now - grace)
    candidates = list(stranded_values(waiting, lost_attempt=1))
    lost = set(missing_attempts([(pk, attempt) for pk, attempt, *_ in candidates], rows.model.job_kind))
    strand(rows, [row for row in candidates if (row[0], row[1]) in lost], now, report, code="queue_lost")
    return report


def stranded_values(
    queryset: AttemptQuerySet[Any], *, lost_attempt: int
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(pk, the stranded attempt's number, attempts, deferrals, max_attempts, campaign id) of each row.

    A running row's stranded attempt is the one it holds; a queued row's is the next one, whose job is lost.
    """
    for pk, attempts, deferrals, max_attempts, campaign_id in queryset.values_list(
        "pk", "attempts", "deferrals", "max_attempts", "campaign_id"
    ).iterator():
        yield pk, attempts + lost_attempt, attempts, deferrals, max_attempts, campaign_id


def strand(
    rows: AttemptRows,
    stranded: list[tuple[int, int, int, int, int, int]],
    now: datetime,
    report: dict[str, int],
    *,
    code: str,
) -> None:
    """Count each stranded attempt; the rows with attempts left go back on the queue, at its front."""
    message = rows.worker_lost if code == "worker_lost" else rows.queue_lost
    states = rows.model.State
    state = states.RUNNING if code == "worker_lost" else states.QUEUED
    # One conditional UPDATE per (attempts, stranded attempt, dead or not): a row that moved meanwhile is
    # left alone. Which rows changed is read back by the `now` stamped on them, inside the transaction
    # that holds their locks.
    groups: dict[tuple[int, int, bool], list[int]] = defaultdict(list)
    campaigns: dict[int, int] = {}
    for pk, attempt, attempts, deferrals, max_attempts, campaign_id in stranded:
        groups[(attempts, attempt, attempt - deferrals >= max_attempts)].append(pk)
        campaigns[pk] = campaign_id
    resend: list[tuple[int, int]] = []
    dead_campaigns: set[int] = set()
    with transaction.atomic():
        for (attempts, attempt, dead), pks in groups.items():
            for start in range(0, len(pks), BATCH):
                chunk = pks[start : start + BATCH]
                common = {"attempts": attempt, "lease_expires_at": None, "error_code": code}
                if dead:
                    outcome = {"state": states.DEAD, "finished_at": now, "next_attempt_at": None}
                else:
                    outcome = {"state": states.QUEUED, "queued_at": now, "next_attempt_at": now}
                # Each concrete model declares `state`; the plugin resolves lookups on the abstract one.
                current = rows.model.objects.filter(  # type: ignore[misc]
                    pk__in=chunk, state=state, attempts=attempts
                )
                if not current.update(**common, **outcome, error_message=message):
                    continue
                changed = list(
                    rows.model.objects.filter(pk__in=chunk, **common, **outcome).values_list("pk", flat=True)
                )
                if dead:
                    report["dead"] += len(changed)
                    dead_campaigns.update(campaigns[pk] for pk in changed)
                else:
                    report[code] += len(changed)
                    resend += [(pk, attempt + 1) for pk in changed]
        if resend:
            transaction.on_commit(lambda: enqueue_attempts(resend, rows.model.job_kind, at_front=True))
        if rows.on_dead:
            for campaign_id in dead_campaigns:
                rows.on_dead(campaign_id)

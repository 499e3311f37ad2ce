"""Signed webhooks to a campaign's receiver when a run finishes: the payload, the signature, delivery and retry.

The signature follows Stripe's scheme (`t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`), so receivers can
use code they already know; `verify` is the reference a receiver can copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from rq.job import Job

from dashboard.models import Campaign, Output, Task, WebhookDelivery
from jobs.backoff import backoff_delay
from jobs.errors import StepError
from jobs.queueing import CONTROL_QUEUE, WAITING_JOB_STATUSES
from jobs.url_fetcher import post_json

logger = logging.getLogger("pixelmill.webhooks")

RUN_FINISHED = "campaign.run.finished"
USER_AGENT = "Pixelmill-Webhooks/1.0"
FAILURES_IN_PAYLOAD = 20
LOG_ENTRIES_KEPT = 50
# Workers' clocks differ a little; a scheduled try released a moment "early" is still due.
CLOCK_SLACK = timedelta(seconds=2)


# Signing: the receiver's half is `verify`.


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Pixelmill-Signature` value; the timestamp is signed too, so an old delivery cannot be replayed."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: int | None = None) -> bool:
    """Whether `header` signs exactly `body` with `secret` and is at most `tolerance` seconds old (or ahead).

    Compares in constant time so the signature cannot be guessed byte by byte; accepts several v1 values,
    as Stripe does, so a receiver's check keeps working if a header ever carries more than one.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and timestamp is None:
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((int(time.time()) if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# The event.


def absolute(path: str) -> str:
    base = settings.PIXELMILL_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else path


def run_summary(campaign: Campaign) -> dict[str, Any]:
    """What a receiver needs to act on a finished run without calling back: counts, the ZIP, the failures."""
    tasks = Task.objects.for_campaign(campaign)
    counts = {row["state"]: row["n"] for row in tasks.order_by().values("state").annotate(n=Count("pk"))}
    failures = tasks.failed().select_related("source", "recipe_version__recipe")[:FAILURES_IN_PAYLOAD]
    return {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "url": absolute(campaign.get_absolute_url()),
        },
        "run": campaign.run_number,
        "tasks": {
            "total": sum(counts.values()),
            "succeeded": counts.get(Task.State.SUCCEEDED, 0),
            "failed": counts.get(Task.State.FAILED, 0),
            "dead": counts.get(Task.State.DEAD, 0),
        },
        "outputs": Output.objects.filter(task__campaign=campaign).count(),
        "download_url": absolute(reverse("campaign-download", args=[campaign.pk])),
        "failures": [
            {
                "image": task.source.display_name,
                "recipe": task.recipe_version.recipe.name,
                "reason": task.error_message,
            }
            for task in failures
        ],
    }


def run_is_finished(campaign: Campaign) -> bool:
    """A run is over when nothing of the campaign is left to do: no unfinished task, no unfinished prompt."""
    if campaign.run_number == 0:
        return False  # never processed: there is no run to report
    return Campaign.objects.filter(pk=campaign.pk).idle().exists()


def campaign_run_finished(campaign_id: int) -> WebhookDelivery | None:
    """Record and send the webhook of the campaign's current run if that run just finished.

    Call it after a task or generation's terminal state is committed. Every worker that finishes a piece may
    call it; the unique (campaign, event, run) row makes exactly one delivery, and only its creator enqueues.
    Returns that delivery, or None when there is no webhook or the run is still going.
    """
    with transaction.atomic():
        # Waits for a Process or Requeue adding work to this run (CampaignQuerySet.join_run) to commit, so
        # the run is never reported finished while work that joined it is about to be queued.
        campaign = Campaign.objects.select_for_update(no_key=True).filter(pk=campaign_id).first()
        if campaign is None or not campaign.webhook_url or not run_is_finished(campaign):
            return None
        return record_run_finished(campaign)


def record_run_finished(campaign: Campaign) -> WebhookDelivery:
    """The delivery of the campaign's current run, created (and enqueued after commit) by the first caller."""
    campaign.ensure_webhook_secret()
    now = timezone.now()
    delivery, created = WebhookDelivery.objects.get_or_create(
        campaign=campaign,
        event=RUN_FINISHED,
        run_number=campaign.run_number,
        defaults={
            "url": campaign.webhook_url,
            "payload": {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": RUN_FINISHED,
                "created": int(now.timestamp()),
                "data": run_summary(campaign),
            },
            "next_attempt_at": now,
        },
    )
    if created:
        transaction.on_commit(lambda: enqueue_delivery(delivery.pk, 1))
        logger.info(
            "webhook created",
            extra={"delivery": delivery.pk, "campaign": campaign.pk, "run": campaign.run_number},
        )
    return delivery


# Delivery.


def delivery_job_id(delivery_id: int, attempt: int) -> str:
    return f"webhook-{delivery_id}-a{attempt}"


def enqueue_delivery(delivery_id: int, attempt: int, at: datetime | None = None) -> None:
    """Send the try now, or at `at` (released by the worker's scheduler: rqworker --with-scheduler)."""
    queue = django_rq.get_queue(CONTROL_QUEUE)
    options = {
        "job_id": delivery_job_id(delivery_id, attempt),
        "job_timeout": int(settings.PIXELMILL_WEBHOOK_TIMEOUT_SECONDS * 3) + 30,
        "result_ttl": 600,
        "failure_ttl": 86400,
        "description": f"deliver webhook {delivery_id} try {attempt}",
    }
    if at is None:
        queue.enqueue(deliver_webhook_task, delivery_id, **options)
    else:
        queue.enqueue_at(at, deliver_webhook_task, delivery_id, **options)


def body_of(delivery: WebhookDelivery) -> bytes:
    """Compact, key-sorted JSON: the same bytes on every try, whichever database stored the payload."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def claim(delivery: WebhookDelivery, now: datetime) -> bool:
    """Take the next try if it is due and nobody has: a duplicate or early job changes nothing.

    While the try runs, `next_attempt_at` works as a lease: if this worker dies, the delivery becomes
    due again and `retry_due_webhooks_task` sends it once that has passed.
    """
    lease = now + timedelta(seconds=settings.PIXELMILL_WEBHOOK_TIMEOUT_SECONDS * 3 + 30)
    return bool(
        WebhookDelivery.objects.filter(pk=delivery.pk, state=delivery.state, attempts=delivery.attempts)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLOCK_SLACK))
        .update(attempts=F("attempts") + 1, next_attempt_at=lease)
    )


def deliver_webhook_task(delivery_id: int) -> str:
    """RQ job (control queue): one signed POST of the delivery; 2xx delivers it, anything else schedules the
    next try with backoff until PIXELMILL_WEBHOOK_MAX_ATTEMPTS, then it is failed.

    Returns the outcome: "delivered", "retry", "failed" or "skipped" (gone, already done, or not due).
    """
    delivery = WebhookDelivery.objects.select_related("campaign").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return "skipped"
    now = timezone.now()
    campaign = delivery.campaign
    if not campaign.webhook_url:
        # The marketer removed the webhook: stop rather than keep calling an address they took back.
        WebhookDelivery.objects.filter(pk=delivery.pk, state=WebhookDelivery.State.PENDING).update(
            state=WebhookDelivery.State.FAILED,
            next_attempt_at=None,
            last_error="The campaign no longer has a webhook URL.",
        )
        return "failed"
    if not claim(delivery, now):
        return "skipped"
    attempt = delivery.attempts + 1
    # A pending delivery follows the campaign's current URL, so fixing a typo reaches the waiting retries.
    url = campaign.webhook_url
    body = body_of(delivery)
    timestamp = int(time.time())
    headers = {
        "User-Agent": USER_AGENT,
        "Pixelmill-Signature": sign(campaign.ensure_webhook_secret(), body, timestamp),
        "Pixelmill-Event": delivery.event,
        "Pixelmill-Delivery": str(delivery.payload.get("id") or delivery.pk),
    }
    status: int | None = None
    error = ""
    started = time.perf_counter()
    try:
        status = post_json(url, body, headers, timeout=settings.PIXELMILL_WEBHOOK_TIMEOUT_SECONDS)
    except StepError as refused:
        error = f"{refused.message[:1].upper()}{refused.message[1:]}."
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    if status is not None and not 200 <= status < 300:
        error = f"The receiver answered HTTP {status}."
        if 300 <= status < 400:
            error = f"The receiver answered HTTP {status}; redirects are not followed."
    entry = {
        "attempt": attempt,
        "time": now.isoformat(),
        "status": status,
        "error": error,
        "duration_ms": duration_ms,
    }
    return record_try(delivery, attempt, url, entry)


# Delivery jobs already in Redis before the rename (a scheduled retry waits up to an hour) name the old
# dotted path; this alias lets them run after a deploy. Remove it one release later.
deliver_webhook = deliver_webhook_task


def record_try(delivery: WebhookDelivery, attempt: int, url: str, entry: dict[str, Any]) -> str:
    """Write the try's outcome if the claim still holds (an admin "Send again" meanwhile wins)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "url": url,
        "last_status_code": entry["status"],
        "last_error": entry["error"],
        "log": [*delivery.log, entry][-LOG_ENTRIES_KEPT:],
    }
    retry_at: datetime | None = None
    if not entry["error"]:
        outcome = "delivered"
        fields |= {"state": WebhookDelivery.State.DELIVERED, "delivered_at": now, "next_attempt_at": None}
    elif attempt >= settings.PIXELMILL_WEBHOOK_MAX_ATTEMPTS:
        outcome = "failed"
        fields |= {"state": WebhookDelivery.State.FAILED, "next_attempt_at": None}
    else:
        outcome = "retry"
        delay = backoff_delay(
            attempt,
            base=settings.PIXELMILL_WEBHOOK_RETRY_BASE_SECONDS,
            cap=settings.PIXELMILL_WEBHOOK_RETRY_MAX_SECONDS,
            factor=settings.PIXELMILL_BACKOFF_FACTOR,
            jitter=settings.PIXELMILL_BACKOFF_JITTER,
        )
        retry_at = now + timedelta(seconds=delay)
        fields["next_attempt_at"] = retry_at
    with transaction.atomic():
        current = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=attempt
        ).update(**fields)
        if current and retry_at is not None:
            transaction.on_commit(lambda: enqueue_delivery(delivery.pk, attempt + 1, at=retry_at))
    logger.info(
        "webhook try finished",
        extra={
            "delivery": delivery.pk,
            "campaign": delivery.campaign_id,
            "job_id": delivery_job_id(delivery.pk, attempt),
            "outcome": outcome if current else "superseded",
            "http_status": entry["status"],
            "error": entry["error"] or None,
            "execution_time_ms": entry["duration_ms"],
        },
    )
    return outcome if current else "skipped"


def resend_deliveries(deliveries: QuerySet[WebhookDelivery]) -> int:
    """Admin "Send again": back to pending with a fresh budget of tries (the log keeps the old ones)."""
    ids = list(deliveries.values_list("pk", flat=True))
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk__in=ids).update(
            state=WebhookDelivery.State.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            delivered_at=None,
        )
        transaction.on_commit(lambda: enqueue_first_tries(ids))
    return len(ids)


def enqueue_first_tries(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        enqueue_delivery(delivery_id, 1)


def retry_due_webhooks_task() -> int:
    """Cron: send again the pending deliveries that were due over PIXELMILL_WEBHOOK_LOST_AFTER_SECONDS ago
    and have no job waiting in Redis (it was emptied, the enqueue after commit failed, or the worker died
    mid-try). Returns how many."""
    lost_after = timedelta(seconds=settings.PIXELMILL_WEBHOOK_LOST_AFTER_SECONDS)
    due = list(
        WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING, next_attempt_at__lt=timezone.now() - lost_after
        ).values_list("pk", "attempts")
    )
    if not due:
        return 0
    connection = django_rq.get_queue(CONTROL_QUEUE).connection
    job_ids = [delivery_job_id(pk, attempts + 1) for pk, attempts in due]
    jobs = Job.fetch_many(job_ids, connection=connection)
    waiting = {
        job.id for job in jobs if job is not None and job.get_status(refresh=False) in WAITING_JOB_STATUSES
    }
    sent = 0
    for pk, attempts in due:
        if delivery_job_id(pk, attempts + 1) not in waiting:
            enqueue_delivery(pk, attempts + 1)
            sent += 1
    if sent:
        logger.warning("webhooks re-sent", extra={"count": sent})
    return sent


# A cron run queued before the rename names the old dotted path; this alias lets it run after a deploy.
# Remove it one release later.
retry_due_webhooks = retry_due_webhooks_task

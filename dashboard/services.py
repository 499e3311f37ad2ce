"""Workflows that span models or enqueue work: process a campaign, requeue failures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dashboard.models import Campaign, Recipe, Task, TaskQuerySet
from jobs.queueing import enqueue_attempts


@dataclass(frozen=True)
class ProcessReport:
    created: int


def enqueue_on_commit(attempts: list[tuple[int, int]]) -> None:
    """Redis hears about tasks only once the rows exist; the reconciler covers a failed send."""
    if attempts:
        transaction.on_commit(lambda: enqueue_attempts(attempts))


def process_campaign(campaign: Campaign, recipes: Iterable[Recipe]) -> ProcessReport:
    """Create a task for each source × current recipe version that has none yet, and enqueue them."""
    recipes = list(recipes)
    with transaction.atomic():
        campaign.recipes.add(*recipes)
        Campaign.objects.filter(pk=campaign.pk).update(run_number=F("run_number") + 1)
        versions = [recipe.current_version() for recipe in recipes]
        existing = set(
            Task.objects.filter(campaign=campaign, recipe_version__in=versions).values_list(
                "source_id", "recipe_version_id"
            )
        )
        now = timezone.now()
        new_tasks = [
            Task(
                campaign=campaign,
                source_id=source_id,
                recipe_version=version,
                state=Task.State.QUEUED,
                max_attempts=settings.PIXELMILL_MAX_ATTEMPTS,
                queued_at=now,
            )
            for source_id in campaign.sources.values_list("pk", flat=True)
            for version in versions
            if (source_id, version.pk) not in existing
        ]
        created = Task.objects.bulk_create(new_tasks, batch_size=1000)
        enqueue_on_commit([(task.pk, 1) for task in created])
    return ProcessReport(created=len(created))


def requeue_tasks(tasks: TaskQuerySet) -> int:
    """failed/dead → queued with a fresh budget of attempts; returns how many were requeued."""
    with transaction.atomic():
        rows = list(tasks.failed().select_for_update().values_list("pk", "attempts", "campaign_id"))
        if not rows:
            return 0
        Task.objects.filter(
            pk__in=[pk for pk, _, _ in rows], state__in=[Task.State.FAILED, Task.State.DEAD]
        ).update(
            state=Task.State.QUEUED,
            max_attempts=F("attempts") - F("deferrals") + settings.PIXELMILL_MAX_ATTEMPTS,
            queued_at=timezone.now(),
            next_attempt_at=None,
            finished_at=None,
            error_code="",
            error_message="",
            error_step="",
        )
        Campaign.objects.filter(pk__in={campaign_id for _, _, campaign_id in rows}).update(
            run_number=F("run_number") + 1
        )
        enqueue_on_commit([(pk, attempts + 1) for pk, attempts, _ in rows])
    return len(rows)


def resume_remote_work(campaign: Campaign) -> int:
    """Lift a pause (credits topped up): parked tasks go back on the queue; returns how many."""
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(remote_paused_reason="", remote_paused_at=None)
        rows = list(
            Task.objects.filter(campaign=campaign, state=Task.State.PAUSED)
            .select_for_update()
            .values_list("pk", "attempts")
        )
        Task.objects.filter(pk__in=[pk for pk, _ in rows], state=Task.State.PAUSED).update(
            state=Task.State.QUEUED,
            queued_at=timezone.now(),
            next_attempt_at=None,
            error_code="",
            error_message="",
        )
        enqueue_on_commit([(pk, attempts + 1) for pk, attempts in rows])
    campaign.remote_paused_reason = ""
    return len(rows)

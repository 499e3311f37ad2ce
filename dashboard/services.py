"""Workflows that span models or enqueue work: process a campaign, requeue failures, generate from prompts,
import by URL, hand a heavy upload to the workers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.crypto import salted_hmac

from dashboard.models import (
    Campaign,
    DeferredUpload,
    Generation,
    Output,
    Provider,
    Recipe,
    RecipeVersion,
    SourceImage,
    Task,
    TaskQuerySet,
    UrlImport,
)
from dashboard.prompts import PromptSpec
from jobs.errors import BudgetCapReachedError
from jobs.queueing import DEFERRED_UPLOADS, GENERATIONS, URL_IMPORTS, JobKind, enqueue_attempts


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
        Campaign.objects.filter(pk=campaign.pk).join_run()
        versions = [recipe.current_version() for recipe in recipes]
        created = queue_tasks(campaign, campaign.sources.all(), versions)
    return ProcessReport(created=len(created))


def process_new_sources(campaign: Campaign, source_ids: Iterable[int]) -> ProcessReport:
    """Sources that joined a campaign after Process (generated images) go through its active recipes, in
    the run of the Generate that brought them."""
    with transaction.atomic():
        versions = [recipe.current_version() for recipe in campaign.recipes.filter(is_active=True)]
        created = queue_tasks(campaign, campaign.sources.filter(pk__in=list(source_ids)), versions)
    return ProcessReport(created=len(created))


def queue_tasks(
    campaign: Campaign, sources: QuerySet[SourceImage], versions: list[RecipeVersion]
) -> list[int]:
    """Queued tasks of the campaign's current run for the source × version pairs that have none yet,
    enqueued once the transaction commits; their primary keys."""
    run_number = Campaign.objects.values_list("run_number", flat=True).get(pk=campaign.pk)
    created = [
        pk
        for version in versions
        for pk in Task.objects.insert_queued(
            campaign, sources, version, max_attempts=settings.PIXELMILL_MAX_ATTEMPTS, run_number=run_number
        )
    ]
    enqueue_on_commit([(pk, 1) for pk in created])
    return created


def requeue_tasks(tasks: TaskQuerySet) -> int:
    """failed/dead → queued with a fresh budget of attempts; returns how many were requeued."""
    now = timezone.now()  # one instant: the run starts when its tasks are queued, not after
    with transaction.atomic():
        rows = list(tasks.failed().select_for_update().values_list("pk", "attempts", "campaign_id"))
        queue_again(rows, [Task.State.FAILED, Task.State.DEAD], now)
    return len(rows)


def queue_again(rows: list[tuple[int, int, int]], states: list[str], now: datetime) -> None:
    """(pk, attempts, campaign_id) rows of locked tasks still in `states` → queued with a fresh budget of
    attempts and no error, in their campaign's current run (one starts at `now` for an idle campaign), the
    next attempt enqueued on commit."""
    if not rows:
        return
    # Before the tasks turn queued: they would make their campaign look busy, so always join the old run.
    Campaign.objects.filter(pk__in={campaign_id for _, _, campaign_id in rows}).join_run(now)
    Task.objects.filter(pk__in=[pk for pk, _, _ in rows], state__in=states).update(
        state=Task.State.QUEUED,
        run_number=Subquery(Campaign.objects.filter(pk=OuterRef("campaign_id")).values("run_number")[:1]),
        max_attempts=F("attempts") - F("deferrals") + settings.PIXELMILL_MAX_ATTEMPTS,
        queued_at=now,
        next_attempt_at=None,
        finished_at=None,
        error_code="",
        error_message="",
        error_step="",
        error_detail="",
    )
    enqueue_on_commit([(pk, attempts + 1) for pk, attempts, _ in rows])


@dataclass(frozen=True)
class RequeueReport:
    requeued: int
    moved: int  # moved to their recipe's current version
    kept: int  # already had a task on the current version, so left as they were


def requeue_differently(
    tasks: TaskQuerySet,
    *,
    on_current_version: bool = False,
    provider_overrides: dict[str, str | None] | None = None,
) -> RequeueReport:
    """Requeue failed tasks, optionally on their recipe's current version and with some steps sent to
    another provider (or run locally): what a marketer does once the cause of a group of failures is known.

    A task moved to the current version keeps its row and attempts; one whose image already has a task
    there (a later Process made it) is left alone rather than duplicated.
    """
    with transaction.atomic():
        tasks = tasks.failed()
        moved = kept = 0
        if on_current_version:
            moved, kept_pks = move_to_current_versions(tasks)
            kept = len(kept_pks)
            tasks = tasks.exclude(pk__in=kept_pks)
        if provider_overrides:
            tasks.update(provider_overrides=provider_overrides)
        return RequeueReport(requeue_tasks(tasks), moved, kept)


def move_to_current_versions(tasks: TaskQuerySet) -> tuple[int, list[int]]:
    """Point failed tasks at the current version of their recipe; returns (moved, pks left in place)."""
    rows = list(tasks.select_for_update().values_list("pk", "source_id", "recipe_version_id"))
    recipe_of = dict(
        RecipeVersion.objects.filter(pk__in={row[2] for row in rows}).values_list("pk", "recipe_id")
    )
    recipes = Recipe.objects.filter(pk__in=set(recipe_of.values()))
    current = {recipe.pk: recipe.current_version() for recipe in recipes}
    stale = [
        (pk, source, current[recipe_of[version]])
        for pk, source, version in rows
        if current[recipe_of[version]].pk != version
    ]
    taken = set(
        Task.objects.filter(
            source_id__in={source for _, source, _ in stale}, recipe_version__in=list(current.values())
        ).values_list("source_id", "recipe_version_id")
    )
    moves: dict[RecipeVersion, list[int]] = {}
    kept: list[int] = []
    for pk, source, target in stale:
        if (source, target.pk) in taken:
            kept.append(pk)
        else:
            taken.add((source, target.pk))
            moves.setdefault(target, []).append(pk)
    for target, pks in moves.items():
        Task.objects.filter(pk__in=pks).update(recipe_version=target)
        # Outputs of the old version's partial attempt would mislabel the new one's.
        Output.objects.filter(task_id__in=pks).delete()
    return sum(len(pks) for pks in moves.values()), kept


def resume_remote_work(campaign: Campaign) -> int:
    """Lift a pause (credits topped up): parked tasks go back on the queue; returns how many."""
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(
            remote_paused_reason="", remote_paused_code="", remote_paused_at=None
        )
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
    campaign.remote_paused_reason = campaign.remote_paused_code = ""
    return len(rows)


def set_budget_cap(campaign: Campaign, cap: Decimal | None) -> int:
    """Change the campaign's budget cap; when the old cap had paused remote work and the new one leaves
    room, the waiting tasks resume. Returns how many resumed."""
    Campaign.objects.filter(pk=campaign.pk).update(budget_cap=cap)
    campaign.refresh_from_db(
        fields=["budget_cap", "remote_spent", "remote_paused_code", "remote_paused_reason"]
    )
    paused_by_budget = campaign.remote_paused_code == BudgetCapReachedError.code
    if paused_by_budget and (cap is None or cap > campaign.remote_spent):
        return resume_remote_work(campaign)
    return 0


def queue_generations(campaign: Campaign, provider: Provider, specs: Iterable[PromptSpec]) -> int:
    """One queued Generation per prompt, enqueued after commit, in the campaign's current run."""
    now = timezone.now()
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).join_run(now)
        created = Generation.objects.bulk_create(
            [
                Generation(
                    campaign=campaign,
                    provider=provider,
                    prompt=spec.prompt,
                    seed=spec.seed,
                    image_size=spec.image_size,
                    num_images=spec.num_images,
                    max_attempts=settings.PIXELMILL_MAX_ATTEMPTS,
                    queued_at=now,
                )
                for spec in specs
            ],
            batch_size=500,
        )
        attempts = [(generation.pk, 1) for generation in created]
        transaction.on_commit(lambda: enqueue_attempts(attempts, GENERATIONS))
    return len(created)


def requeue_generations(generations: QuerySet[Generation]) -> int:
    """failed/dead → queued with fresh attempts. A dead one polls its paid request again; a failed one
    (fal refused it or its result) is submitted anew."""
    terminal = [Generation.State.FAILED, Generation.State.DEAD]
    with transaction.atomic():
        rows = list(
            generations.filter(state__in=terminal)
            .select_for_update()
            .values_list("pk", "attempts", "campaign_id", "state")
        )
        if not rows:
            return 0
        Campaign.objects.filter(pk__in={row[2] for row in rows}).join_run()
        fresh = {
            "state": Generation.State.QUEUED,
            "max_attempts": F("attempts") - F("deferrals") + settings.PIXELMILL_MAX_ATTEMPTS,
            "queued_at": timezone.now(),
            "next_attempt_at": None,
            "finished_at": None,
            "error_code": "",
            "error_message": "",
            "error_detail": "",
        }
        Generation.objects.filter(pk__in=[row[0] for row in rows], state=Generation.State.DEAD).update(
            **fresh
        )
        Generation.objects.filter(pk__in=[row[0] for row in rows], state=Generation.State.FAILED).update(
            **fresh, request_id="", status_url="", response_url="", cancel_url="", submitted_at=None
        )
        attempts = [(pk, done + 1) for pk, done, _, _ in rows]
        transaction.on_commit(lambda: enqueue_attempts(attempts, GENERATIONS))
    return len(rows)


def expedite_generation(generation: Generation) -> bool:
    """fal says the request is done: run the waiting generation's next check now instead of when due.

    Its scheduled job keeps the same id; whichever copy comes second finds it claimed and does nothing.
    """
    if generation.state != Generation.State.QUEUED:
        return False  # a worker is polling it right now and will see it finish
    attempt = (generation.pk, generation.attempts + 1)
    transaction.on_commit(lambda: enqueue_attempts([attempt], GENERATIONS))
    return True


MAX_URL_LENGTH = 2000


@dataclass(frozen=True)
class UrlImportReport:
    queued: int
    already: int
    refused: list[tuple[str, str]]


def queue_url_imports(campaign: Campaign, urls: Iterable[str]) -> UrlImportReport:
    """One queued UrlImport per new URL, downloaded by the workers. A URL that cannot work is refused at
    once, and kept as a failed import so the list of what did not come in stays on the page; a URL the
    campaign is already importing, or imported, is not fetched again."""
    refused: list[tuple[str, str]] = []
    wanted: list[str] = []
    failed: list[UrlImport] = []
    now = timezone.now()
    for url in dict.fromkeys(url.strip() for url in urls):
        if len(url) > MAX_URL_LENGTH:
            reason, code, url = f"longer than {MAX_URL_LENGTH:,} characters", "url_invalid", url[:80] + "…"
        elif not url.lower().startswith(("http://", "https://")):
            reason, code = "only http and https URLs can be imported", "url_scheme"
        else:
            wanted.append(url)
            continue
        refused.append((url, reason))
        failed.append(
            UrlImport(
                campaign=campaign, url=url, state=UrlImport.State.FAILED, error_code=code,
                error_message=f"{reason[:1].upper()}{reason[1:]}.", queued_at=now, finished_at=now,
            )
        )  # fmt: skip
    limit = settings.PIXELMILL_URL_IMPORT_MAX_URLS
    if len(wanted) > limit:
        refused.append((f"{len(wanted) - limit} more URLs", f"at most {limit:,} URLs per import"))
        wanted = wanted[:limit]
    known = set(
        campaign.url_imports.filter(url__in=wanted)
        .exclude(state__in=[UrlImport.State.FAILED, UrlImport.State.DEAD])
        .values_list("url", flat=True)
    )
    with transaction.atomic():
        UrlImport.objects.bulk_create(failed, batch_size=1000)
        created = UrlImport.objects.bulk_create(
            [
                UrlImport(
                    campaign=campaign, url=url, max_attempts=settings.PIXELMILL_MAX_ATTEMPTS, queued_at=now
                )
                for url in wanted
                if url not in known
            ],
            batch_size=1000,
        )
        attempts = [(row.pk, 1) for row in created]
        transaction.on_commit(lambda: enqueue_attempts(attempts, URL_IMPORTS))
    return UrlImportReport(queued=len(created), already=len(known), refused=refused)


def queue_deferred_upload(
    campaign: Campaign, *, name: str, kind: str, key: str, byte_size: int
) -> DeferredUpload:
    """A stored upload (at `key`) for the workers to bring in; its job is sent once the row exists."""
    with transaction.atomic():
        upload = DeferredUpload.objects.create(
            campaign=campaign, name=name, kind=kind, file=key, byte_size=byte_size,
            max_attempts=settings.PIXELMILL_MAX_ATTEMPTS, queued_at=timezone.now(),
        )  # fmt: skip
        attempt = [(upload.pk, 1)]
        transaction.on_commit(lambda: enqueue_attempts(attempt, DEFERRED_UPLOADS))
    return upload


def retryable_url_imports(imports: QuerySet[UrlImport]) -> QuerySet[UrlImport]:
    """The failed imports another try could bring in: not a malformed URL or another scheme, and not a
    private address unless an operator has since trusted some network."""
    never = ["url_scheme", "url_invalid"]
    if not settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS:
        never.append("url_forbidden")
    return imports.filter(state__in=[UrlImport.State.FAILED, UrlImport.State.DEAD]).exclude(
        error_code__in=never
    )


def requeue_url_imports(imports: QuerySet[UrlImport]) -> int:
    """failed/dead → queued with fresh attempts (the server is back, or an operator trusted its network)."""
    return requeue_with_fresh_attempts(retryable_url_imports(imports), URL_IMPORTS)


def requeue_deferred_uploads(uploads: QuerySet[DeferredUpload]) -> int:
    """dead → queued with fresh attempts, for the uploads whose file is still stored: a worker gave up while
    storage or the database were away. A failed one (its file refused) or one already brought in is left."""
    return requeue_with_fresh_attempts(
        uploads.filter(state=DeferredUpload.State.DEAD).exclude(file=""), DEFERRED_UPLOADS
    )


def requeue_with_fresh_attempts(rows: QuerySet[Any], kind: JobKind) -> int:
    """Failed or dead attempt rows (UrlImport, DeferredUpload) → queued, with PIXELMILL_MAX_ATTEMPTS more
    attempts and their error cleared; each one's next attempt is enqueued after the commit."""
    model = rows.model
    ended = [model.State.FAILED, model.State.DEAD]
    with transaction.atomic():
        picked = list(rows.filter(state__in=ended).select_for_update().values_list("pk", "attempts"))
        model.objects.filter(pk__in=[pk for pk, _ in picked], state__in=ended).update(
            state=model.State.QUEUED,
            max_attempts=F("attempts") - F("deferrals") + settings.PIXELMILL_MAX_ATTEMPTS,
            queued_at=timezone.now(),
            next_attempt_at=None,
            finished_at=None,
            error_code="",
            error_message="",
        )
        attempts = [(pk, done + 1) for pk, done in picked]
        transaction.on_commit(lambda: enqueue_attempts(attempts, kind))
    return len(picked)


def crops_around_subject(definition: dict[str, Any]) -> bool:
    """Whether a recipe version's outputs depend on where the subject is: a smart_crop step or a fill output."""
    return any(step["operation"] == "smart_crop" for step in definition["steps"]) or any(
        output.get("fit") == "fill" for output in definition["outputs"]
    )


def set_focal_point(source: SourceImage, point: tuple[float, float] | None) -> int:
    """Choose (or with None, go back to detecting) the subject point of an image, and render again the
    succeeded tasks of that image whose crops depend on it; returns how many were requeued."""
    now = timezone.now()
    x, y = point if point is not None else (None, None)
    with transaction.atomic():
        SourceImage.objects.filter(pk=source.pk).update(focal_point_x=x, focal_point_y=y)
        source.focal_point_x, source.focal_point_y = x, y
        rows = [
            (pk, attempts, source.campaign_id)
            for pk, attempts, definition in Task.objects.filter(source=source, state=Task.State.SUCCEEDED)
            .select_for_update(of=("self",))
            .values_list("pk", "attempts", "recipe_version__definition")
            if crops_around_subject(definition)
        ]
        queue_again(rows, [Task.State.SUCCEEDED], now)
    return len(rows)


def fal_webhook_token() -> str:
    """The secret path segment of our fal webhook URL, derived from SECRET_KEY: guessing it is hopeless."""
    return salted_hmac("pixelmill.fal-webhook", "fal webhook path", algorithm="sha256").hexdigest()[:40]

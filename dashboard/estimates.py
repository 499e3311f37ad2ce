"""What a Process run will take before anyone presses the button: tasks, provider calls, their cost, and
how long it runs with the workers alive now (or how many workers a deadline needs)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from statistics import fmean

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from dashboard.models import Campaign, Provider, Recipe, Task, remote_calls
from jobs.queueing import get_process_queue, live_workers

# The average is taken over this many recent succeeded tasks: recent enough to reflect today's
# providers and machines, many enough that one slow image does not swing it.
MEASURED_TASKS = 200
# Below this many, an average says more about luck than about the recipe.
MIN_MEASURED = 5


@dataclass(frozen=True)
class TaskTime:
    """Seconds one task takes on one worker, and where that figure comes from."""

    seconds: float
    measured: int  # tasks averaged; 0 when the figure is the configured assumption
    basis: str  # "recipe", "all recipes" or "assumed"

    @classmethod
    def overall(cls) -> TaskTime:
        durations = list(
            Task.objects.filter(state=Task.State.SUCCEEDED, duration_ms__isnull=False)
            .order_by("-finished_at")
            .values_list("duration_ms", flat=True)[:MEASURED_TASKS]
        )
        if len(durations) >= MIN_MEASURED:
            return cls(fmean(durations) / 1000, len(durations), "all recipes")
        return cls(settings.PIXELMILL_ASSUMED_TASK_SECONDS, 0, "assumed")

    @classmethod
    def for_recipe(cls, recipe: Recipe, overall: TaskTime) -> TaskTime:
        """This recipe's own recent tasks (any version), else every recipe's, else the assumption."""
        durations = list(
            Task.objects.filter(
                state=Task.State.SUCCEEDED, duration_ms__isnull=False, recipe_version__recipe=recipe
            )
            .order_by("-finished_at")
            .values_list("duration_ms", flat=True)[:MEASURED_TASKS]
        )
        if len(durations) >= MIN_MEASURED:
            return cls(fmean(durations) / 1000, len(durations), "recipe")
        return overall


@dataclass(frozen=True)
class RecipeEstimate:
    recipe: Recipe
    version: int | None
    tasks: int  # what Process would create
    existing: int  # images that already have a task on this version: Process skips them
    remote_steps: tuple[str, ...]  # provider slugs, one per remote step
    task_time: TaskTime

    @property
    def work_seconds(self) -> float:
        return self.tasks * self.task_time.seconds


@dataclass(frozen=True)
class ProviderCalls:
    slug: str
    provider: Provider | None
    calls: int

    @property
    def name(self) -> str:
        return self.provider.name if self.provider else self.slug

    @property
    def cost(self) -> Decimal:
        return (self.provider.price_per_call if self.provider else Decimal(0)) * self.calls

    @property
    def min_seconds(self) -> float:
        """The provider's shared rate limit alone: no number of workers sends faster than this."""
        rate = self.provider.requests_per_second if self.provider else 0
        return self.calls / rate if rate > 0 else 0.0


@dataclass(frozen=True)
class DeadlinePlan:
    """How many workers finish the run by `deadline`; `workers` is None when no number can."""

    deadline: datetime
    workers: int | None
    reason: str = ""


@dataclass(frozen=True)
class RunEstimate:
    campaign: Campaign
    sources: int
    recipes: tuple[RecipeEstimate, ...]
    providers: tuple[ProviderCalls, ...]
    workers: int | None  # alive on the process queue now; None when Redis does not answer
    queued_ahead: int  # jobs already waiting on the queue, which run first
    overall: TaskTime
    now: datetime

    @property
    def tasks(self) -> int:
        return sum(r.tasks for r in self.recipes)

    @property
    def existing(self) -> int:
        return sum(r.existing for r in self.recipes)

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.providers)

    @property
    def cost(self) -> Decimal:
        return sum((p.cost for p in self.providers), Decimal(0))

    @property
    def work_seconds(self) -> float:
        """Worker time this run needs, plus what is queued ahead of it."""
        return sum(r.work_seconds for r in self.recipes) + self.queued_ahead * self.overall.seconds

    @property
    def longest_task_seconds(self) -> float:
        return max((r.task_time.seconds for r in self.recipes if r.tasks), default=0.0)

    @property
    def rate_limit(self) -> ProviderCalls | None:
        """The provider whose rate limit bounds the run, if any does."""
        limiting = max(self.providers, key=lambda p: p.min_seconds, default=None)
        return limiting if limiting is not None and limiting.min_seconds > 0 else None

    def seconds_with(self, workers: int) -> float:
        """Wall time with `workers` in parallel: never faster than one task, nor than a rate limit allows."""
        floor = max(self.longest_task_seconds, self.rate_limit.min_seconds if self.rate_limit else 0.0)
        return max(self.work_seconds / workers, floor)

    @property
    def duration_seconds(self) -> float | None:
        return self.seconds_with(self.workers) if self.workers and self.tasks else None

    @property
    def assumed(self) -> bool:
        return any(r.task_time.basis == "assumed" for r in self.recipes if r.tasks)

    @property
    def over_budget(self) -> bool:
        left = self.campaign.budget_left
        return left is not None and self.cost > left

    def plan_for(self, deadline: datetime) -> DeadlinePlan:
        available = (deadline - self.now).total_seconds()
        if available <= 0:
            return DeadlinePlan(deadline, None, "That time has already passed.")
        limit = self.rate_limit
        if limit is not None and limit.min_seconds > available:
            return DeadlinePlan(
                deadline,
                None,
                f"No number of workers can: {limit.name} takes at most "
                f"{limit.provider.requests_per_second:g} requests a second, so its {limit.calls} calls alone "
                f"need {describe_seconds(limit.min_seconds)}.",
            )
        if self.longest_task_seconds > available:
            return DeadlinePlan(
                deadline,
                None,
                f"No number of workers can: one task alone takes {describe_seconds(self.longest_task_seconds)}.",
            )
        return DeadlinePlan(deadline, max(1, math.ceil(self.work_seconds / available)))


def estimate_run(
    campaign: Campaign,
    recipes: Iterable[Recipe],
    *,
    now: datetime | None = None,
    image_count: int | None = None,
) -> RunEstimate:
    """What Process with `recipes` would do now. Read-only: unlike Process it publishes no version.

    Results already in the step cache are not paid again, but which ones will hit depends on pixels
    only the run produces, so every remote step counts as a paid call: the cost is an upper bound.
    `image_count` is the campaign's images when the caller has just counted them.
    """
    sources = campaign.sources.count() if image_count is None else image_count
    overall = TaskTime.overall()
    estimates: list[RecipeEstimate] = []
    calls: dict[str, int] = {}
    for recipe in recipes:
        version = recipe.versions.order_by("-number").first()
        definition = version.definition if version else recipe.definition()
        existing = Task.objects.filter(campaign=campaign, recipe_version=version).count() if version else 0
        tasks = max(0, sources - existing)
        remote = remote_calls(definition)
        for slug in remote:
            calls[slug] = calls.get(slug, 0) + tasks
        estimates.append(
            RecipeEstimate(
                recipe=recipe,
                version=version.number if version else None,
                tasks=tasks,
                existing=existing,
                remote_steps=remote,
                task_time=TaskTime.for_recipe(recipe, overall),
            )
        )
    providers = {p.slug: p for p in Provider.objects.filter(slug__in=calls)}
    workers, queued_ahead = queue_state()
    return RunEstimate(
        campaign=campaign,
        sources=sources,
        recipes=tuple(estimates),
        providers=tuple(ProviderCalls(slug, providers.get(slug), n) for slug, n in calls.items() if n),
        workers=workers,
        queued_ahead=queued_ahead,
        overall=overall,
        now=now or timezone.now(),
    )


def queue_state() -> tuple[int | None, int]:
    """Workers listening on the process queue, and the jobs waiting on it; (None, 0) without Redis."""
    queue = get_process_queue()
    try:
        return len(live_workers(queue)), queue.count
    except RedisError:
        return None, 0


def describe_seconds(seconds: float) -> str:
    """“about 40 s”, “about 12 min”, “about 3 h 20 min”, “about 2 days”: an estimate, worded as one."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
    return f"about {round(hours / 24)} days"


def describe_money(amount: Decimal | float) -> str:
    """“12.40 USD”; a price per call can hold fractions of a cent, which are kept (“0.0125 USD”)."""
    amount = Decimal(amount)
    places = 2 if amount == amount.quantize(Decimal("0.01")) else 4
    return f"{amount:,.{places}f} {settings.PIXELMILL_CURRENCY}"

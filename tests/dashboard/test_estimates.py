"""Estimates before Process: tasks and paid calls, their cost, task time measured or assumed, time with the
workers alive now, and how many workers a deadline needs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rq import Worker

from dashboard import estimates
from dashboard.estimates import RunEstimate, TaskTime, describe_seconds, estimate_run
from dashboard.models import Provider, Recipe, Task
from jobs.queueing import get_process_queue
from tests.factories import make_source, make_task


@pytest.fixture
def removebg(db):
    return Provider.objects.create(
        name="remove.bg", slug="removebg", kind="removebg", base_url="https://api.remove.bg",
        price_per_call=Decimal("0.2"), requests_per_second=2,
    )  # fmt: skip


@pytest.fixture
def cutouts(removebg):
    recipe = Recipe.objects.create(name="Cut-outs", slug="cut-outs")
    recipe.steps.create(operation="remove_background", provider=removebg)
    recipe.outputs.create(name="square", width=200, height=200, fit="pad", format="png")
    recipe.publish_version()
    return recipe


@pytest.fixture
def no_workers(monkeypatch):
    monkeypatch.setattr(estimates, "queue_state", lambda: (0, 0))


def with_workers(monkeypatch, workers: int, queued: int = 0) -> None:
    monkeypatch.setattr(estimates, "queue_state", lambda: (workers, queued))


def add_sources(campaign, count: int) -> None:
    for n in range(count):
        make_source(campaign, sha=f"{n:064d}", name=f"{n}.jpg")


def test_tasks_are_images_times_recipes_less_what_exists_and_only_remote_steps_are_paid(
    campaign, cutouts, ready_recipes, no_workers
):
    add_sources(campaign, 4)
    Task.objects.create(
        campaign=campaign, source=campaign.sources.first(), recipe_version=cutouts.current_version()
    )
    estimate = estimate_run(campaign, [cutouts, ready_recipes["sale-banner"]])
    assert (estimate.sources, estimate.tasks, estimate.existing) == (4, 3 + 4, 1)
    [calls] = estimate.providers
    assert (calls.name, calls.calls, calls.cost) == ("remove.bg", 3, Decimal("0.6"))
    assert estimate.calls == 3 and estimate.cost == Decimal("0.6")


def test_steps_batched_into_one_pixelpanda_call_are_estimated_as_one_call(campaign, no_workers):
    pixelpanda = Provider.objects.create(
        name="PixelPanda", slug="pixelpanda", kind="pixelpanda", base_url="https://api.pixelpanda.ai",
        price_per_call=Decimal("0.05"),
    )  # fmt: skip
    recipe = Recipe.objects.create(name="Studio", slug="studio")
    recipe.steps.create(position=0, operation="remove_background", provider=pixelpanda)
    recipe.steps.create(position=1, operation="enhance", provider=pixelpanda)
    recipe.outputs.create(name="square", width=200, height=200, fit="pad", format="png")
    recipe.publish_version()
    add_sources(campaign, 4)
    assert (estimate_run(campaign, [recipe]).calls, estimate_run(campaign, [recipe]).cost) == (
        4,
        Decimal("0.2"),
    )
    Provider.objects.filter(pk=pixelpanda.pk).update(options={"batch": False})
    assert estimate_run(campaign, [recipe]).calls == 8


def test_estimating_a_recipe_never_processed_publishes_no_version(campaign, no_workers, db):
    recipe = Recipe.objects.create(name="Fresh", slug="fresh")
    recipe.outputs.create(name="x", width=10, height=10)
    add_sources(campaign, 2)
    assert estimate_run(campaign, [recipe]).tasks == 2
    assert not recipe.versions.exists()


def test_task_time_is_this_recipes_recent_average_else_any_recipes_else_the_assumption(
    campaign, cutouts, ready_recipes, settings
):
    settings.PIXELMILL_ASSUMED_TASK_SECONDS = 7
    assert TaskTime.for_recipe(cutouts, TaskTime.overall()) == TaskTime(7, 0, "assumed")
    now = timezone.now()
    for n in range(6):
        make_task(campaign, ready_recipes["sale-banner"], sha=f"{n:064d}", state=Task.State.SUCCEEDED,
                  duration_ms=2000 + 200 * n, finished_at=now)  # fmt: skip
    overall = TaskTime.overall()
    assert overall == TaskTime(2.5, 6, "all recipes")
    assert TaskTime.for_recipe(cutouts, overall) == overall  # none of its own yet
    for n in range(5):
        make_task(
            campaign,
            cutouts,
            sha=f"{n + 10:064d}",
            state=Task.State.SUCCEEDED,
            duration_ms=9000,
            finished_at=now,
        )
    assert TaskTime.for_recipe(cutouts, TaskTime.overall()) == TaskTime(9.0, 5, "recipe")


def run_estimate(campaign, *, tasks: int, seconds: float, workers: int | None, queued: int = 0, calls=()):
    recipe = estimates.RecipeEstimate(Recipe(name="r"), 1, tasks, 0, (), TaskTime(seconds, 50, "recipe"))
    return RunEstimate(
        campaign=campaign, sources=tasks, recipes=(recipe,), providers=tuple(calls), workers=workers,
        queued_ahead=queued, overall=TaskTime(seconds, 50, "all recipes"), now=timezone.now(),
    )  # fmt: skip


def test_the_run_takes_the_work_shared_among_the_live_workers_after_what_is_queued_ahead(campaign):
    assert run_estimate(campaign, tasks=100, seconds=3, workers=4).duration_seconds == 75
    assert run_estimate(campaign, tasks=100, seconds=3, workers=4, queued=20).duration_seconds == 90
    assert (
        run_estimate(campaign, tasks=2, seconds=3, workers=4).duration_seconds == 3
    )  # one task is the floor
    assert run_estimate(campaign, tasks=100, seconds=3, workers=0).duration_seconds is None


def test_a_deadline_gives_the_workers_needed_or_says_why_none_suffice(campaign, removebg):
    estimate = run_estimate(campaign, tasks=600, seconds=6, workers=2)  # 3600 worker-seconds
    assert estimate.plan_for(estimate.now + timedelta(minutes=10)).workers == 6
    assert estimate.plan_for(estimate.now + timedelta(hours=2)).workers == 1
    assert "already passed" in estimate.plan_for(estimate.now - timedelta(minutes=1)).reason
    assert "one task alone" in estimate.plan_for(estimate.now + timedelta(seconds=5)).reason

    limited = run_estimate(
        campaign, tasks=600, seconds=6, workers=2, calls=[estimates.ProviderCalls("removebg", removebg, 600)]
    )
    assert limited.rate_limit.min_seconds == 300  # 600 calls at 2 a second
    assert limited.seconds_with(100) == 300
    plan = limited.plan_for(limited.now + timedelta(minutes=4))
    assert plan.workers is None and "remove.bg takes at most 2 requests a second" in plan.reason


def test_live_workers_are_the_ones_listening_on_the_process_queue(redis_conn):
    assert estimates.queue_state() == (0, 0)
    worker = Worker([get_process_queue()], connection=redis_conn, name="estimate-test-worker")
    worker.register_birth()
    try:
        get_process_queue().enqueue_call("jobs.tasks.process_task", args=(1, 1))
        assert estimates.queue_state() == (1, 1)
    finally:
        worker.register_death()


def test_an_estimate_over_what_is_left_of_the_budget_says_so(campaign, cutouts, no_workers):
    add_sources(campaign, 10)  # 10 calls at 0.20
    campaign.budget_cap, campaign.remote_spent = Decimal("5"), Decimal("3.5")
    assert estimate_run(campaign, [cutouts]).over_budget
    campaign.budget_cap = Decimal("10")
    assert not estimate_run(campaign, [cutouts]).over_budget


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "about 1 s"), (45, "about 45 s"), (600, "about 10 min"), (3 * 3600 + 1200, "about 3 h 20 min"),
     (5 * 86400, "about 5 days")],
)  # fmt: skip
def test_durations_read_as_estimates(seconds, text):
    assert describe_seconds(seconds) == text

"""Models: recipe versions, the task state machine and its conditional updates, progress figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from dashboard.models import Progress, Recipe, RecipeOutput, RecipeStep, Task
from tests.factories import make_source, make_task


def test_every_publish_bumps_the_version_and_freezes_the_definition(ready_recipes):
    recipe = ready_recipes["social-ads-pack"]
    first = recipe.current_version()
    recipe.outputs.filter(name="facebook").update(width=1000)
    second = recipe.publish_version()
    assert second.number == first.number + 1
    assert recipe.version == second.number
    assert {o["name"]: o["width"] for o in first.definition["outputs"]}["facebook"] == 1200
    assert {o["name"]: o["width"] for o in second.definition["outputs"]}["facebook"] == 1000


def test_recipe_definition_fills_operation_defaults(ready_recipes):
    steps = ready_recipes["ecommerce-pack"].current_version().definition["steps"]
    assert steps[0]["operation"] == "remove_background"
    assert steps[1]["params"]["background"] == "#ffffff"
    assert len(steps[1]["params"]) > 2  # canonical form carries every parameter, defaults included


def test_ready_recipes_build_through_the_registry(ready_recipes):
    assert set(ready_recipes) == {"ecommerce-pack", "social-ads-pack", "sale-banner"}
    ecommerce = ready_recipes["ecommerce-pack"].current_version()
    assert [spec.name for spec in ecommerce.build_specs()] == [
        "thumbnail", "thumbnail-webp", "product", "product-webp", "zoom", "zoom-webp"
    ]  # fmt: skip
    for recipe in ready_recipes.values():
        assert recipe.current_version().build_steps()


def test_invalid_step_params_are_a_validation_error_naming_the_parameter(db):
    recipe = Recipe.objects.create(name="Bad", slug="bad")
    step = RecipeStep(recipe=recipe, position=1, operation="canvas", params={"margin": 7})
    with pytest.raises(ValidationError) as error:
        step.full_clean()
    assert "margin" in str(error.value)


def test_invalid_output_spec_is_a_validation_error(db):
    recipe = Recipe.objects.create(name="Bad", slug="bad")
    output = RecipeOutput(recipe=recipe, name="x", width=100, height=100, fit="fit", format="jpeg", quality=0)
    with pytest.raises(ValidationError):
        output.full_clean()


def test_the_same_bytes_never_twice_in_one_campaign(campaign):
    make_source(campaign)
    with pytest.raises(IntegrityError):
        make_source(campaign)


def test_claim_is_granted_once_per_attempt(campaign, ready_recipes):
    task = make_task(campaign, ready_recipes["sale-banner"], state=Task.State.QUEUED)
    assert Task.claim(task.pk, 1, "w1") is True
    assert Task.claim(task.pk, 1, "w2") is False  # duplicate delivery of the same job
    assert Task.claim(task.pk, 2, "w2") is False  # a later attempt cannot jump in while running
    task.refresh_from_db()
    assert (task.state, task.attempts, task.worker_name) == ("running", 1, "w1")
    assert task.lease_expires_at > timezone.now()


def test_a_stale_attempt_cannot_overwrite_the_outcome(campaign, ready_recipes):
    task = make_task(campaign, ready_recipes["sale-banner"], state=Task.State.QUEUED)
    Task.claim(task.pk, 1, "w1")
    assert task.requeue(1, at=timezone.now(), code="timeout", message="slow", error_step="x")
    Task.claim(task.pk, 2, "w2")
    # Attempt 1's worker comes back late and reports success: ignored.
    assert task.mark_succeeded(1, timings={}) is False
    assert task.mark_succeeded(2, timings={"total": 1.0}) is True
    task.refresh_from_db()
    assert task.state == "succeeded" and task.error_message == ""


def test_mark_failed_distinguishes_failed_from_dead(campaign, ready_recipes):
    permanent = make_task(campaign, ready_recipes["sale-banner"], state=Task.State.QUEUED, sha="b" * 64)
    exhausted = make_task(campaign, ready_recipes["sale-banner"], state=Task.State.QUEUED, sha="c" * 64)
    for task in (permanent, exhausted):
        Task.claim(task.pk, 1, "w")
    permanent.mark_failed(1, code="unreadable", message="corrupt", step="decode", permanent=True)
    exhausted.mark_failed(1, code="timeout", message="slow", step="render", permanent=False)
    assert set(Task.objects.failed().values_list("state", flat=True)) == {"failed", "dead"}
    permanent.refresh_from_db()
    assert (permanent.error_step, permanent.error_message) == ("decode", "corrupt")


def test_progress_counts_percent_rate_and_eta(campaign, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    now = timezone.now()
    for n in range(6):
        make_task(
            campaign,
            recipe,
            sha=f"{n:064d}",
            state=Task.State.SUCCEEDED,
            started_at=now - timedelta(seconds=60),
            finished_at=now - timedelta(seconds=n),
        )
    for n in range(6, 10):
        make_task(campaign, recipe, sha=f"{n:064d}", state=Task.State.QUEUED)
    progress = Progress.for_tasks(campaign.tasks.all())
    assert (progress.total, progress.done, progress.percent, progress.remaining) == (10, 6, 60, 4)
    assert 5.5 < progress.per_minute < 6.5  # six in the minute since the run started
    assert 35 < progress.eta_seconds < 45
    assert not progress.is_finished


def test_progress_counts_as_retrying_the_queued_tasks_that_failed_before(campaign, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    make_task(campaign, recipe, sha="1" * 64, state=Task.State.QUEUED, attempts=1, error_message="Timed out")
    make_task(campaign, recipe, sha="2" * 64, state=Task.State.QUEUED)
    make_task(campaign, recipe, sha="3" * 64, state=Task.State.FAILED, attempts=3, error_message="Timed out")
    assert Progress.for_tasks(campaign.tasks.all()).retrying == 1
    campaign.tasks.filter(state=Task.State.QUEUED).update(state=Task.State.RUNNING)
    assert Progress.for_tasks(campaign.tasks.all()).retrying == 0  # running again: no longer waiting to retry


def test_spend_is_booked_only_while_the_budget_cap_allows_it(campaign):
    from decimal import Decimal

    from dashboard.models import Campaign

    campaign.budget_cap = Decimal("0.50")
    campaign.save()
    price = Decimal("0.20")
    assert [Campaign.book_remote_spend(campaign.pk, price) for _ in range(3)] == [True, True, False]
    Campaign.refund_remote_spend(campaign.pk, price)
    campaign.refresh_from_db()
    assert campaign.remote_spent == Decimal("0.20") and campaign.budget_left == Decimal("0.30")
    assert Campaign.book_remote_spend(campaign.pk, Decimal(0)), "free calls are never stopped"


def test_a_succeeded_task_keeps_its_total_time_in_a_column_for_aggregates(campaign, ready_recipes):
    task = make_task(campaign, ready_recipes["sale-banner"], state=Task.State.RUNNING, attempts=1)
    assert task.mark_succeeded(1, timings={"decode": 10.0, "total": 1234.5})
    task.refresh_from_db()
    assert task.duration_ms == 1234.5


def test_encoder_options_are_frozen_into_the_version_and_reach_the_spec(ready_recipes):
    recipe = ready_recipes["ecommerce-pack"]
    recipe.outputs.filter(name="zoom-webp").update(webp_method=1)
    recipe.outputs.filter(name="zoom").update(progressive=True)
    specs = {spec.name: spec for spec in recipe.publish_version().build_specs()}
    assert specs["zoom-webp"].webp_method == 1 and specs["zoom"].progressive is True
    assert specs["product-webp"].webp_method == 4  # empty means the documented default


def test_an_encoder_option_on_the_wrong_format_is_a_validation_error(ready_recipes):
    output = ready_recipes["ecommerce-pack"].outputs.get(name="zoom")
    output.webp_method = 2
    with pytest.raises(ValidationError, match="WEBP only"):
        output.full_clean()


def test_campaign_counts_come_from_grouped_queries_not_a_join_of_sources_and_tasks(campaign, ready_recipes):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dashboard.models import Campaign

    recipe = ready_recipes["social-ads-pack"]
    for n, state in enumerate(["succeeded", "succeeded", "failed", "dead", "queued"]):
        make_task(campaign, recipe, sha=f"{n}" * 64, state=state)
    make_source(campaign, sha="f" * 64)  # an image with no task yet
    with CaptureQueriesContext(connection) as queries:
        [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert (row.source_count, row.task_count, row.done_count, row.failed_count) == (6, 5, 4, 2)
    assert not any("JOIN" in query["sql"].upper() for query in queries)
    empty = Campaign.objects.create(name="Empty", team=campaign.team)
    [row] = Campaign.objects.filter(pk=empty.pk).counted()
    assert (row.source_count, row.task_count) == (0, 0)


def test_a_finished_campaigns_counts_are_cached_until_work_or_images_are_added(
    campaign, ready_recipes, django_assert_num_queries
):
    """An idle campaign is counted once: its figures change only with a new run or a newer image, which
    both change its cache key. A busy campaign's task counts are kept for a few seconds only."""
    from dashboard.models import Campaign
    from dashboard.services import requeue_tasks

    recipe = ready_recipes["social-ads-pack"]
    make_task(campaign, recipe, sha="1" * 64, state="succeeded")
    failed = make_task(campaign, recipe, sha="2" * 64, state="failed")
    [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert (row.source_count, row.task_count, row.done_count, row.failed_count) == (2, 2, 2, 1)
    with django_assert_num_queries(1):  # the campaigns only: the figures come from the cache
        [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert (row.task_count, row.failed_count) == (2, 1)

    make_source(campaign, sha="3" * 64)  # a newer image: counted again
    [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert row.source_count == 3

    requeue_tasks(Campaign.objects.get(pk=campaign.pk).tasks.filter(pk=failed.pk))  # a new run: counted again
    [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert (row.done_count, row.failed_count) == (1, 0)
    with django_assert_num_queries(1):  # busy and counted a moment ago: kept for BUSY_COUNTS_SECONDS
        Campaign.objects.filter(pk=campaign.pk).counted()
    Task.objects.filter(pk=failed.pk).update(state="succeeded")  # as a worker finishes it: idle again
    [row] = Campaign.objects.filter(pk=campaign.pk).counted()
    assert (row.done_count, row.failed_count) == (2, 0)


def test_progress_counts_the_current_run_not_the_campaigns_history(campaign, ready_recipes, db):
    from django.utils import timezone

    from dashboard.services import process_campaign

    make_source(campaign, sha="a" * 64)
    make_source(campaign, sha="b" * 64)
    process_campaign(campaign, [ready_recipes["sale-banner"]])
    campaign.tasks.update(state=Task.State.SUCCEEDED, finished_at=timezone.now())
    campaign.refresh_from_db()
    assert (campaign.progress().total, campaign.progress().percent) == (2, 100)

    process_campaign(campaign, [ready_recipes["social-ads-pack"]])  # a second run: two new tasks
    campaign.refresh_from_db()
    progress = campaign.progress()
    assert (progress.total, progress.done, progress.percent) == (2, 0, 0)
    assert campaign.tasks.count() == 4


def test_a_run_left_only_with_paused_tasks_shows_no_countdown(campaign, ready_recipes, db):
    make_task(campaign, ready_recipes["sale-banner"], sha="c" * 64, state=Task.State.PAUSED)
    progress = campaign.progress()
    assert progress.is_waiting_for_resume and progress.eta_seconds is None

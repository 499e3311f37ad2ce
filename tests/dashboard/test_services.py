"""Workflows across models: requeueing a group of failures on the current recipe version or another provider."""

from __future__ import annotations

from dashboard.models import Task
from dashboard.services import requeue_differently
from tests.factories import make_source, make_task


def test_requeue_on_the_current_version_moves_failed_tasks_unless_their_image_already_has_one(
    campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    recipe = ready_recipes["sale-banner"]
    old_version = recipe.current_version()
    moving = make_task(
        campaign, recipe, sha="1" * 64, state=Task.State.FAILED, attempts=2, error_code="timeout"
    )
    moving.outputs.create(name="banner", file="x.jpg", width=1, height=1, format="jpeg", byte_size=1)
    covered = make_task(
        campaign, recipe, sha="2" * 64, state=Task.State.DEAD, attempts=5, error_code="timeout"
    )
    new_version = recipe.publish_version()
    Task.objects.create(
        campaign=campaign, source=covered.source, recipe_version=new_version, state="succeeded"
    )

    with django_capture_on_commit_callbacks(execute=True):
        report = requeue_differently(
            Task.objects.filter(pk__in=[moving.pk, covered.pk]), on_current_version=True
        )
    assert (report.requeued, report.moved, report.kept) == (1, 1, 1)
    moving.refresh_from_db()
    assert (moving.recipe_version, moving.state, moving.attempts) == (new_version, "queued", 2)
    assert not moving.outputs.exists(), "the old version's partial outputs went with it"
    covered.refresh_from_db()
    assert (covered.recipe_version, covered.state) == (old_version, "dead")  # left as it was
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [f"task-{moving.pk}-a3".encode()]


def test_a_provider_override_can_also_send_a_remote_step_back_to_our_workers(campaign, ready_recipes, db):
    task = make_task(
        campaign, ready_recipes["ecommerce-pack"], state=Task.State.FAILED, error_code="rate_limited"
    )
    report = requeue_differently(
        Task.objects.filter(pk=task.pk), provider_overrides={"remove_background": None}
    )
    task.refresh_from_db()
    assert report.requeued == 1 and task.provider_overrides == {"remove_background": None}
    assert not task.uses_providers()


def test_only_failed_tasks_are_touched(campaign, ready_recipes, db):
    source = make_source(campaign, sha="3" * 64)
    running = Task.objects.create(
        campaign=campaign,
        source=source,
        recipe_version=ready_recipes["ecommerce-pack"].current_version(),
        state="running",
    )
    report = requeue_differently(
        Task.objects.filter(pk=running.pk), provider_overrides={"remove_background": "x"}
    )
    running.refresh_from_db()
    assert report.requeued == 0 and running.provider_overrides == {} and running.state == "running"

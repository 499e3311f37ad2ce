"""Runs: the progress panel counts the current run's tasks exactly; its total moves only when the marketer
adds work to the run (issue 14, item 3)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.models import Task
from dashboard.services import process_campaign, requeue_tasks
from tests.factories import make_source


def shown_progress(client, campaign) -> tuple[int, int, int]:
    """(total, done, percent) as the polling panel's JSON reports them."""
    data = client.get(reverse("campaign-progress", args=[campaign.pk]), {"format": "json"}).json()
    return data["total"], data["done"], data["percent"]


def start(task: Task) -> int:
    """A worker claims the task's next attempt; returns the attempt number."""
    task.refresh_from_db()
    attempt = task.attempts + 1
    assert Task.claim(task.pk, attempt)
    return attempt


def succeed(task: Task) -> None:
    task.refresh_from_db()
    attempt = task.attempts if task.state == Task.State.RUNNING else start(task)
    assert task.mark_succeeded(attempt)


def fail(task: Task) -> None:
    attempt = start(task)
    assert task.mark_failed(attempt, code="unreadable", message="The file is truncated or corrupt.")


@pytest.fixture
def twenty_images(campaign):
    for n in range(20):
        make_source(campaign, sha=f"{n:064x}", name=f"photo-{n}.jpg")
    return campaign


def test_requeueing_failures_while_the_run_goes_on_keeps_its_total_as_earlier_tasks_finish(
    marketer_client, twenty_images, ready_recipes
):
    """The report: during a re-run the total shrank 20 → 19 → 18 → 15 while the percentage rose, because
    tasks queued before the requeue were counted while unfinished and dropped once they finished."""
    campaign = twenty_images
    process_campaign(campaign, [ready_recipes["sale-banner"]])
    tasks = list(campaign.tasks.order_by("pk"))
    for task in tasks[:10]:
        succeed(task)
    for task in tasks[10:15]:
        fail(task)
    for task in tasks[15:]:
        start(task)  # still rendering
    assert shown_progress(marketer_client, campaign) == (20, 15, 75)

    assert requeue_tasks(campaign.tasks.failed()) == 5  # the failures of this run go round again
    assert shown_progress(marketer_client, campaign) == (20, 10, 50)

    # A worker retries one of them after a provider hiccup: the same task, the same run.
    assert tasks[15].requeue(1, at=timezone.now(), code="timeout", message="The provider timed out.")
    assert shown_progress(marketer_client, campaign) == (20, 10, 50)

    seen = []
    for task in tasks[15:] + tasks[10:15]:
        succeed(task)
        seen.append(shown_progress(marketer_client, campaign))
    assert [total for total, _, _ in seen] == [20] * 10
    assert [percent for _, _, percent in seen] == [55, 60, 65, 70, 75, 80, 85, 90, 95, 100]


def test_a_rerun_on_a_new_version_during_a_run_adds_its_tasks_and_the_total_then_holds(
    marketer_client, campaign, ready_recipes
):
    recipe = ready_recipes["sale-banner"]
    for n in range(4):
        make_source(campaign, sha=f"{n:064x}")
    process_campaign(campaign, [recipe])
    first = list(campaign.tasks.order_by("pk"))
    for task in first[:2]:
        succeed(task)
    assert shown_progress(marketer_client, campaign) == (4, 2, 50)

    recipe.outputs.filter(name="banner-small").update(quality=70)
    recipe.publish_version()
    process_campaign(campaign, [recipe])  # four more tasks join the run that is still going
    assert shown_progress(marketer_client, campaign) == (8, 2, 25)

    totals = []
    for task in first[2:] + list(campaign.tasks.filter(recipe_version__number=2).order_by("pk")):
        succeed(task)
        totals.append(shown_progress(marketer_client, campaign)[0])
    assert totals == [8] * 6
    assert shown_progress(marketer_client, campaign) == (8, 8, 100)


def test_after_a_run_finished_a_requeue_starts_the_next_run_from_zero(
    marketer_client, campaign, ready_recipes
):
    for n in range(3):
        make_source(campaign, sha=f"{n:064x}")
    process_campaign(campaign, [ready_recipes["sale-banner"]])
    tasks = list(campaign.tasks.order_by("pk"))
    succeed(tasks[0])
    succeed(tasks[1])
    fail(tasks[2])
    campaign.refresh_from_db()
    first_run = campaign.run_number
    assert shown_progress(marketer_client, campaign) == (3, 3, 100)

    requeue_tasks(campaign.tasks.failed())
    campaign.refresh_from_db()
    assert campaign.run_number == first_run + 1
    assert shown_progress(marketer_client, campaign) == (1, 0, 0)
    succeed(tasks[2])
    assert shown_progress(marketer_client, campaign) == (1, 1, 100)


def test_a_run_only_ever_grows_by_what_the_marketer_adds(campaign, ready_recipes):
    """Processing another recipe while the run goes on adds exactly its tasks; nothing else moves the total."""
    for n in range(3):
        make_source(campaign, sha=f"{n:064x}")
    process_campaign(campaign, [ready_recipes["sale-banner"]])
    campaign.refresh_from_db()
    run = campaign.run_number
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])
    campaign.refresh_from_db()
    assert campaign.run_number == run, "work added to a busy campaign joins its run"
    assert campaign.progress().total == 6
    assert set(campaign.tasks.values_list("run_number", flat=True)) == {run}

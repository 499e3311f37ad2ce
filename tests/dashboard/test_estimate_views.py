"""The estimate on the campaign page and its live fragment, and the budget cap form."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard import estimates
from dashboard.models import Campaign, Provider, Recipe, Task, Team
from tests.dashboard.pages import text_of, visible_text
from tests.factories import make_source, make_task


@pytest.fixture(autouse=True)
def two_workers(monkeypatch):
    monkeypatch.setattr(estimates, "queue_state", lambda: (2, 0))


@pytest.fixture
def cutouts(db):
    provider = Provider.objects.create(
        name="Photoroom", slug="photoroom", kind="photoroom", base_url="https://sdk.photoroom.com",
        price_per_call=Decimal("0.05"), requests_per_second=50,
    )  # fmt: skip
    recipe = Recipe.objects.create(name="Cut-outs", slug="cut-outs")
    recipe.steps.create(operation="remove_background", provider=provider)
    recipe.outputs.create(name="square", width=200, height=200, fit="pad", format="png")
    recipe.publish_version()
    return recipe


def test_the_campaign_page_estimates_the_recipes_it_last_processed(marketer_client, campaign, cutouts):
    for n in range(3):
        make_source(campaign, sha=f"{n:064d}")
    campaign.recipes.add(cutouts)
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    text = visible_text(page)
    assert text_of(page, "estimate-tasks") == "3" and "3 tasks" in text
    assert text_of(page, "estimate-calls") == "3" and "3 provider calls Photoroom ×3" in text
    assert text_of(page, "estimate-cost") == "0.15 USD"
    assert "with the 2 workers running now" in page and "assumed until tasks have been measured" in page


def test_the_fragment_follows_the_ticked_recipes_and_plans_workers_for_a_deadline(
    marketer_client, campaign, cutouts, ready_recipes, settings
):
    settings.PIXELMILL_ASSUMED_TASK_SECONDS = 6
    for n in range(100):
        make_source(campaign, sha=f"{n:064d}")
    url = reverse("campaign-estimate", args=[campaign.pk])
    assert "Tick recipes" in marketer_client.get(url).content.decode()

    deadline = (timezone.localtime() + timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M")
    recipes = [cutouts.pk, ready_recipes["sale-banner"].pk]
    fragment = marketer_client.get(url, {"recipes": recipes, "deadline": deadline}).content.decode()
    assert text_of(fragment, "estimate-tasks") == "200" and text_of(fragment, "estimate-cost") == "5.00 USD"
    # 200 tasks × 6 s = 1200 worker-seconds: 10 minutes on 2 workers; 5 to 6 minutes need 4.
    assert "about 10 min" in fragment
    assert "4 workers (2 running now)" in visible_text(fragment)

    bad = marketer_client.get(url, {"recipes": recipes, "deadline": "next week"}).content.decode()
    assert "Enter a date and time" in bad and text_of(bad, "estimate-tasks") == "200"


def test_nothing_new_to_process_is_said_before_pressing_process(marketer_client, campaign, cutouts):
    make_task(campaign, cutouts, state=Task.State.SUCCEEDED)
    fragment = marketer_client.get(
        reverse("campaign-estimate", args=[campaign.pk]), {"recipes": [cutouts.pk]}
    ).content.decode()
    assert "Nothing new to process" in fragment


def test_the_budget_cap_is_set_cleared_and_never_negative(marketer_client, campaign):
    url = reverse("campaign-budget", args=[campaign.pk])
    response = marketer_client.post(url, {"budget_cap": "25.50"}, follow=True)
    assert "Budget cap set to 25.50 USD." in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).budget_cap == Decimal("25.50")
    marketer_client.post(url, {"budget_cap": "-3"})
    assert Campaign.objects.get(pk=campaign.pk).budget_cap == Decimal("25.50")
    marketer_client.post(url, {"budget_cap": ""})
    assert Campaign.objects.get(pk=campaign.pk).budget_cap is None


def test_raising_the_cap_resumes_the_work_the_budget_paused_with_a_banner_until_then(
    marketer_client, campaign, cutouts, redis_conn, django_capture_on_commit_callbacks
):
    task = make_task(campaign, cutouts, state=Task.State.PAUSED, attempts=1)
    Campaign.objects.filter(pk=campaign.pk).update(budget_cap=Decimal("1"), remote_spent=Decimal("1"))
    Campaign.pause_remote(
        campaign.pk, code="budget_reached", reason="The campaign's budget cap of 1.00 USD is reached."
    )
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "Budget cap reached: remote work is paused." in page and "Raise cap and resume" in page

    # The box suggests what is spent plus the dearest call for each waiting image (0.05 here).
    assert 'value="1.05"' in page

    url = reverse("campaign-budget", args=[campaign.pk])
    response = marketer_client.post(url, {"budget_cap": "1.00"}, follow=True)  # not above what was spent
    assert "It is still reached (1.00 USD spent): raise it above that" in response.content.decode()
    assert Task.objects.get(pk=task.pk).state == Task.State.PAUSED
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(url, {"budget_cap": "5"}, follow=True)
    assert "1 waiting task is back on the queue" in response.content.decode()
    assert Task.objects.get(pk=task.pk).state == Task.State.QUEUED
    assert Campaign.objects.get(pk=campaign.pk).remote_paused_reason == ""
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [f"task-{task.pk}-a2".encode()]


def test_another_teams_estimate_and_budget_answer_404(campaign, django_user_model):
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    assert client.get(reverse("campaign-estimate", args=[campaign.pk])).status_code == 404
    assert client.post(reverse("campaign-budget", args=[campaign.pk]), {"budget_cap": "1"}).status_code == 404

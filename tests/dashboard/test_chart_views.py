"""The campaign's charts page and the system page: pictures (SVG), live workers, queue lengths."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rq import Worker

from dashboard.models import Task, Team
from jobs.queueing import enqueue_attempts, get_process_queue
from tests.dashboard.pages import find_all, text_of, visible_text
from tests.factories import make_task


@pytest.fixture
def finished_campaign(campaign, ready_recipes):
    now = timezone.now()
    recipe = ready_recipes["sale-banner"]
    for n in range(6):
        make_task(campaign, recipe, sha=f"{n:064d}", state=Task.State.SUCCEEDED, duration_ms=1000 + 100 * n,
                  finished_at=now - timedelta(minutes=n))  # fmt: skip
    make_task(
        campaign, recipe, sha="9" * 64, state=Task.State.DEAD, error_code="worker_lost", finished_at=now
    )
    return campaign


def test_a_campaigns_charts_are_pictures_of_throughput_task_time_and_failures(
    marketer_client, finished_campaign
):
    page = marketer_client.get(reverse("campaign-charts", args=[finished_campaign.pk])).content.decode()
    drawn = [
        chart.attrs["id"] for chart in find_all(page, "svg", class_="chart") if "empty" not in chart.classes
    ]
    assert drawn == ["throughput", "task-time", "errors"]
    assert text_of(page, "figure-finished") == "7" and text_of(page, "figure-average") == "1.3 s"
    assert "Interrupted" in page  # the failures are drawn by cause
    assert not find_all(page, "table")
    hour = marketer_client.get(reverse("campaign-charts", args=[finished_campaign.pk]), {"range": "hour"})
    assert hour.status_code == 200 and text_of(hour.content.decode(), "figure-finished") == "7"
    detail = marketer_client.get(finished_campaign.get_absolute_url()).content.decode()
    assert reverse("campaign-charts", args=[finished_campaign.pk]) in detail


def test_the_system_page_draws_queue_lengths_and_shows_each_live_worker(
    marketer_client, finished_campaign, redis_conn
):
    enqueue_attempts([(pk, 1) for pk in range(3)])
    worker = Worker([get_process_queue()], connection=redis_conn, name="pixelmill-test-worker")
    worker.register_birth()
    worker.set_state("idle")
    try:
        page = marketer_client.get(reverse("system")).content.decode()
        live = marketer_client.get(reverse("system"), {"live": "1"}).content.decode()
    finally:
        worker.register_death()
    assert 'id="queues"' in page and "default: 3 waiting" in page
    [card] = find_all(page, "figure", data_worker="pixelmill-test-worker")
    assert "idle" in card.classes and card.text.startswith("idle")
    assert 'id="task-states"' in page and "all campaigns: 6 succeeded" in page
    assert 'id="system-throughput"' in page
    assert live.startswith('\n<div id="system-live"') or live.lstrip().startswith('<div id="system-live"')
    assert 'hx-trigger="every 5s"' in live and "<html" not in live


def test_a_worker_process_with_threads_is_one_card_that_counts_its_busy_threads(marketer_client, redis_conn):
    # Three RQ workers of one process (same host and pid), as PIXELMILL_WORKER_THREADS=3 starts them.
    threads = [
        Worker([get_process_queue()], connection=redis_conn, name=name)
        for name in ("pixelmill-proc", "pixelmill-proc.t2", "pixelmill-proc.t3")
    ]
    for worker, state in zip(threads, ("idle", "busy", "idle"), strict=True):
        worker.register_birth()
        worker.set_state(state)
    try:
        page = marketer_client.get(reverse("system")).content.decode()
    finally:
        for worker in threads:
            worker.register_death()
    [card] = find_all(page, "figure", class_="worker")
    assert card.attrs["data-worker"] == "pixelmill-proc" and "busy" in card.classes
    assert card.text.startswith("1 of 3 busy") and "3 threads" in card.text
    assert re.search(r"\b3 threads in 1 process\b", visible_text(page))


def test_with_no_worker_the_system_page_says_work_waits(marketer_client, redis_conn):
    assert "No worker is running" in marketer_client.get(reverse("system")).content.decode()


def test_another_teams_charts_answer_404_and_every_chart_page_needs_a_login(
    finished_campaign, django_user_model
):
    url = reverse("campaign-charts", args=[finished_campaign.pk])
    assert Client().get(url).status_code == 302 and Client().get(reverse("system")).status_code == 302
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    assert client.get(url).status_code == 404

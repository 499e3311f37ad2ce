"""/metrics: hidden without a token, refused without the right one; tasks by state, queue depth and the age of
each queue's oldest job, circuit breakers and money spent read at scrape time; a dead Redis leaves the rest."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rq import Queue

from dashboard.management.commands.metrics_server import metrics_app
from dashboard.models import Campaign, Provider, Task
from jobs.breaker import BreakerPolicy, CircuitBreaker
from jobs.telemetry import record_provider_call
from tests.factories import make_task
from tests.scrapes import BEARER, scrape, total, value


@pytest.fixture
def token(settings):
    settings.PIXELMILL_METRICS_TOKEN = BEARER
    return BEARER


def test_metrics_does_not_exist_without_a_configured_token(client, db, settings):
    settings.PIXELMILL_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {BEARER}", BEARER])
def test_metrics_refuses_a_request_without_the_token(client, db, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"pixelmill_" not in response.content


def test_metrics_counts_tasks_by_state_and_money_spent(client, campaign, ready_recipes, redis_conn, token):
    recipe = ready_recipes["sale-banner"]
    for n, state in enumerate(["queued", "queued", "succeeded", "dead"]):
        make_task(campaign, recipe, sha=f"{n:064d}", state=state)
    Campaign.objects.filter(pk=campaign.pk).update(remote_spent=Decimal("1.25"))

    text = scrape(client)
    assert value(text, "pixelmill_tasks", state="queued") == 2
    assert value(text, "pixelmill_tasks", state="succeeded") == 1
    assert value(text, "pixelmill_tasks", state="dead") == 1
    assert value(text, "pixelmill_tasks", state="running") == 0, "every state is listed, zero or not"
    assert value(text, "pixelmill_budget_spent", currency=django_settings.PIXELMILL_CURRENCY) == 1.25
    assert value(text, "pixelmill_source_up", source="database") == 1


def test_metrics_shows_queue_depth_and_how_long_the_oldest_job_has_waited(client, db, redis_conn, token):
    # rq's own Queue: django-rq's would wait for the test's transaction to commit.
    queue = Queue("default", connection=redis_conn)
    first = queue.enqueue("jobs.tasks.process_task", 1, 1)
    queue.enqueue("jobs.tasks.process_task", 2, 1)
    # As if the head of the queue had waited an hour.
    first.enqueued_at = datetime.now(UTC) - timedelta(hours=1)
    first.save()

    text = scrape(client)
    assert value(text, "pixelmill_queue_jobs", queue="default") == 2
    assert value(text, "pixelmill_queue_jobs", queue="control") == 0
    assert value(text, "pixelmill_queue_oldest_job_age_seconds", queue="default") >= 3600
    assert value(text, "pixelmill_queue_oldest_job_age_seconds", queue="control") == 0
    assert value(text, "pixelmill_source_up", source="redis") == 1


def test_metrics_shows_an_open_circuit_breaker(client, db, redis_conn, token):
    for slug in ("flaky", "steady"):
        Provider.objects.create(name=slug, slug=slug, kind="removebg", base_url="http://127.0.0.1:9")
    breaker = CircuitBreaker(redis_conn, "flaky", BreakerPolicy(min_calls=2, failure_rate=0.5))
    while not breaker.record(failed=True, now=time.time()):
        pass

    text = scrape(client)
    assert value(text, "pixelmill_provider_circuit_open", provider="flaky") == 1
    assert value(text, "pixelmill_provider_circuit_open", provider="steady") == 0


def test_metrics_sums_figures_recorded_by_this_process(client, db, redis_conn, token):
    before = scrape(client)
    record_provider_call("sim-unit", "ok")
    record_provider_call("sim-unit", "rate_limited")
    after = scrape(client)
    assert (
        total(after, "pixelmill_provider_calls_total", provider="sim-unit")
        - total(before, "pixelmill_provider_calls_total", provider="sim-unit")
        == 2
    )
    assert value(after, "pixelmill_provider_rate_limited_total", provider="sim-unit") >= 1


def test_metrics_still_answers_with_redis_gone_and_says_which_source_failed(client, db, settings, token):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.RQ_QUEUES = {
        name: {**queue, "URL": f"redis://127.0.0.1:{closed}/0"} for name, queue in settings.RQ_QUEUES.items()
    }
    text = scrape(client)
    assert value(text, "pixelmill_source_up", source="redis") == 0
    assert value(text, "pixelmill_source_up", source="database") == 1
    assert value(text, "pixelmill_tasks", state="queued") == 0
    assert value(text, "pixelmill_queue_jobs", queue="default") is None


def call_app(path: str, authorization: str | None) -> tuple[str, bytes]:
    answered: dict[str, str] = {}
    environ = {"PATH_INFO": path, **({"HTTP_AUTHORIZATION": authorization} if authorization else {})}
    body = b"".join(metrics_app(environ, lambda status, headers: answered.setdefault("status", status)))
    return answered["status"], body


def test_a_worker_machines_metrics_server_needs_the_token_and_serves_only_process_figures(db, token):
    record_provider_call("sim-server", "ok")
    assert call_app("/metrics", None)[0].startswith("401")
    assert call_app("/elsewhere", f"Bearer {BEARER}")[0].startswith("404")
    status, body = call_app("/metrics", f"Bearer {BEARER}")
    assert status.startswith("200")
    text = body.decode()
    assert total(text, "pixelmill_provider_calls_total", provider="sim-server") >= 1
    assert value(text, "pixelmill_tasks", state="queued") is None, "database figures come from the web's"


def test_every_task_state_is_a_label_value():
    assert set(Task.State.values) >= {"pending", "queued", "running", "succeeded", "failed", "dead"}


def test_django_rqs_own_metrics_page_stays_behind_the_queue_permission(marketer_client, db):
    # prometheus-client being installed makes django-rq add /admin/rq/metrics/; it counts workers and jobs.
    assert Client().get("/admin/rq/metrics/").status_code in (302, 403, 404)
    assert marketer_client.get("/admin/rq/metrics/").status_code in (302, 403, 404)


def test_a_file_a_starting_process_has_not_sized_yet_does_not_fail_the_scrape(
    client, db, redis_conn, token, settings, tmp_path
):
    settings.PROMETHEUS_MULTIPROC_DIR = tmp_path
    (tmp_path / "counter_elsewhere-4242.db").touch()  # opened, not yet truncated to its size
    text = scrape(client)
    assert value(text, "pixelmill_tasks", state="queued") == 0

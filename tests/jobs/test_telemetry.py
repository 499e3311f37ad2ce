"""Worker figures in Prometheus: forked work-horses record into one folder and a scrape during the run sums
them: attempts and their steps timed, provider calls by outcome, 429s counted, reconciler repairs counted."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard.models import Task
from dashboard.services import process_campaign
from jobs.reconciler import reconcile_task
from jobs.telemetry import HOST, RECONCILER_REPAIRS
from tests.conftest import start_worker_process
from tests.factories import add_source, make_remote_recipe, make_task
from tests.jobs.images import jpeg, product_on_white
from tests.polling import wait_until
from tests.scrapes import BEARER, scrape, total, value

IMAGES = 6


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_scrape_during_a_real_worker_run_sums_every_work_horse(
    client, settings, simulator, make_provider, campaign, redis_conn, tmp_path
):
    settings.PIXELMILL_METRICS_TOKEN = BEARER
    # A metrics folder of this test's own, as on a machine just started: the session's holds earlier tests' figures.
    settings.PROMETHEUS_MULTIPROC_DIR = tmp_path
    # The first call answers 429 with Retry-After 0: the client waits, tries again and succeeds.
    simulator.configure(provider="removebg", fail_next=["429"], retry_after_seconds=0)
    removebg = make_provider("removebg", price_per_call=Decimal("0.02"))
    recipe = make_remote_recipe(
        "Cut-out thumbs",
        [("remove_background", {}, removebg)],
        outputs=[{"name": "thumb", "width": 120, "height": 120, "format": "jpeg"}],
    )
    for n in range(IMAGES):
        add_source(campaign, jpeg(product_on_white(240, 180, seed=n)), f"{n}.jpg")
    process_campaign(campaign, [recipe])

    # RQ's fork per job: every attempt runs in a work-horse process of its own, which exits after it.
    workers = [
        start_worker_process(
            "default",
            burst=False,
            worker_class="jobs.worker.ForkingPixelmillWorker",
            env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        )
    ]
    try:

        def all_timed() -> str | None:
            text = scrape(client)
            done = total(text, "pixelmill_task_duration_seconds_count", outcome="succeeded")
            return text if done >= IMAGES else None

        text = wait_until(all_timed, 120, 0.2, "the workers never recorded every attempt")
        assert all(worker.poll() is None for worker in workers), "scraped while the worker still runs"
        print("\n--- /metrics during the run (excerpt) ---")
        print("\n".join(line for line in text.splitlines() if line.startswith("pixelmill_")))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)

    assert set(campaign.tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    assert value(text, "pixelmill_tasks", state="succeeded") == IMAGES
    assert value(text, "pixelmill_task_duration_seconds_count", outcome="succeeded") == IMAGES
    for step in ("decode", "remove_background", "render", "store"):
        assert value(text, "pixelmill_step_duration_seconds_count", step=step) == IMAGES, step
    assert value(text, "pixelmill_provider_calls_total", provider="sim-removebg", outcome="ok") == IMAGES
    assert value(text, "pixelmill_provider_calls_total", provider="sim-removebg", outcome="rate_limited") == 1
    assert value(text, "pixelmill_provider_rate_limited_total", provider="sim-removebg") == 1
    assert value(text, "pixelmill_provider_circuit_open", provider="sim-removebg") == 0
    assert value(text, "pixelmill_budget_spent", currency=settings.PIXELMILL_CURRENCY) == 0.12
    assert value(text, "pixelmill_queue_jobs", queue="default") == 0
    # The work-horses timed their attempts in files of their own, named after the host and their pid, and
    # the scrape summed them after they had exited.
    timed_by = {
        name.removesuffix(".db").rsplit("-", 1)[-1]
        for name in os.listdir(tmp_path)
        if name.startswith(f"histogram_{HOST}-")
    }
    assert len(timed_by) >= 2, timed_by
    # No live gauge outlives its process: the worker dropped each horse's, and its own on the way out.
    left = [name for name in os.listdir(tmp_path) if name.startswith("gauge_livesum_")]
    assert left == [], left


@pytest.mark.django_db(transaction=True)
def test_reconciler_repairs_are_counted_by_what_they_found(campaign, ready_recipes, redis_conn):
    before = RECONCILER_REPAIRS.labels(repair="queue_lost")._value.get()
    # Queued an hour ago, and Redis holds no job for it: the queue lost it.
    make_task(
        campaign,
        ready_recipes["sale-banner"],
        state=Task.State.QUEUED,
        queued_at=timezone.now() - timedelta(hours=1),
    )
    assert reconcile_task()["queue_lost"] == 1
    assert RECONCILER_REPAIRS.labels(repair="queue_lost")._value.get() == before + 1

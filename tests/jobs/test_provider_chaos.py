"""A flaky provider under load: real rqworker processes, two remote steps, the simulator's chaos preset.

The preset answers 20% of calls 429 (half with Retry-After in seconds, half as an HTTP-date), 10% 503,
5% connection resets, 2% read timeouts and 1% 400. Proven from the simulator's own request log:

- every image succeeds, except those a 400 refused, which fail after exactly that one call and show
  the provider's reason;
- no call was made after a 429 reached a worker and before that 429's Retry-After deadline;
- never more calls in flight at a provider than its configured concurrency;
- no provider was paid twice for the same input (retries reuse the step cache).

The suite runs a small version; `make provider-chaos` runs 500 images (PIXELMILL_PROVIDER_CHAOS_IMAGES,
PIXELMILL_PROVIDER_CHAOS_WORKERS).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from dashboard.models import Output, Task
from dashboard.services import process_campaign
from jobs.reconciler import reconcile_task
from simulator import max_in_flight, requests_before_deadline
from tests.conftest import start_worker_process
from tests.factories import add_source, make_remote_recipe
from tests.jobs.images import jpeg, product_on_white
from tests.polling import wait_until

IMAGES = int(os.environ.get("PIXELMILL_PROVIDER_CHAOS_IMAGES", "16"))
WORKERS = int(os.environ.get("PIXELMILL_PROVIDER_CHAOS_WORKERS", "3"))
CONCURRENCY = 4
# A call sent in the instant between a 429 leaving the simulator and the worker recording its cool-down
# in Redis could not have known of it, nor one that took its slot just before and was still building its
# request. 100 ms covered that on a quiet machine, but once, with the 2 cores shared by a dozen busy
# processes (load average 5.5), a call left more than 100 ms after a 429. With Retry-After at 1 s, the 0.7 s
# left still catch a client that ignores it: it would call again within its backoff's milliseconds.
GRACE_SECONDS = 0.3

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_flaky_provider_loses_nothing_and_never_pays_twice(simulator, make_provider, campaign, redis_conn):
    simulator.configure(preset="chaos", retry_after_seconds=1.0, hang_seconds=3.0, seed=11)
    limits = {"requests_per_second": 20.0, "concurrency": CONCURRENCY, "timeout_seconds": 2.0}
    removebg = make_provider("removebg", name="remove.bg (simulated)", **limits)
    pixelpanda = make_provider("pixelpanda", name="PixelPanda (simulated)", **limits)
    recipe = make_remote_recipe(
        "Flaky pack",
        [("remove_background", {}, removebg), ("enhance", {}, pixelpanda), ("canvas", {}, None)],
        outputs=[
            {"name": "thumb", "width": 150, "height": 150, "format": "jpeg"},
            {"name": "product", "width": 400, "height": 400, "format": "webp"},
        ],
    )
    for n in range(IMAGES):
        add_source(campaign, jpeg(product_on_white(320, 240, seed=n, size=0.45 + (n % 5) * 0.05)), f"{n}.jpg")
    process_campaign(campaign, [recipe])
    total = campaign.tasks.count()
    assert total == IMAGES

    unfinished = campaign.tasks.exclude(state__in=Task.TERMINAL_STATES)

    def settled() -> bool:
        """All terminal yet? If not, replace workers that exited and requeue what lost its worker."""
        if not unfinished.exists():
            return True
        workers[:] = [w if w.poll() is None else start_worker_process("default") for w in workers]
        reconcile_task()
        return False

    started = time.monotonic()
    workers = [start_worker_process("default") for _ in range(WORKERS)]
    try:
        wait_until(
            settled,
            timeout=120 + IMAGES * 2,
            interval=0.25,
            message=lambda: f"stuck: {list(unfinished.values('pk', 'state', 'attempts', 'error_message'))}",
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(20)
    elapsed = time.monotonic() - started

    tasks = list(campaign.tasks.all())
    states = Counter(task.state for task in tasks)
    log = [entry for entry in simulator.log() if entry["provider"] in ("removebg", "pixelpanda")]
    outcomes = Counter(entry["outcome"] for entry in log)
    refused = [entry for entry in log if entry["status"] == 400]
    early = requests_before_deadline(log, grace_seconds=GRACE_SECONDS)
    in_flight = {provider: max_in_flight(log, provider) for provider in ("removebg", "pixelpanda")}
    paid = Counter((entry["provider"], entry["input_sha256"]) for entry in log if entry["outcome"] == "ok")
    print(
        f"\nprovider chaos: {total} images, {WORKERS} workers, {elapsed:.0f} s; "
        f"tasks {dict(states)}; {len(log)} calls {dict(outcomes)}; "
        f"max in flight {in_flight} (limit {CONCURRENCY}); calls before a Retry-After deadline: {len(early)}; "
        f"inputs paid twice: {sum(n > 1 for n in paid.values())}"
    )

    failed = [task for task in tasks if task.state != Task.State.SUCCEEDED]
    assert states[Task.State.SUCCEEDED] + states[Task.State.FAILED] == total, "nothing dead or stuck"
    assert len(failed) == len(refused), "exactly the refused images failed"
    for task in failed:
        assert task.state == Task.State.FAILED and task.error_code == "provider_rejected"
        assert "refused the image" in task.error_message, task.error_message
    for entry in refused:
        later = [
            e
            for e in log
            if e["provider"] == entry["provider"]
            and e["input_sha256"] == entry["input_sha256"]
            and e["started"] > entry["started"]
        ]
        assert later == [], "a refused call is never repeated"
    assert early == [], f"calls before a Retry-After deadline: {early[:3]}"
    assert all(n <= CONCURRENCY for n in in_flight.values()), in_flight
    assert all(n == 1 for n in paid.values()), "every input was paid for once"
    assert Output.objects.filter(task__campaign=campaign).count() == 2 * states[Task.State.SUCCEEDED]

"""Chaos: real workers, work-horses SIGKILLed at random and Redis emptied mid-run; nothing is lost or done twice.

The suite runs a small version; `make chaos` runs a long one (PIXELMILL_CHAOS_TASKS, _KILLS, _WORKERS).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from dashboard.models import Output, SourceImage, Task
from dashboard.services import process_campaign
from jobs.reconciler import reconcile_task
from tests.conftest import start_worker_process
from tests.jobs.images import jpeg, photo
from tests.jobs.test_tasks import child_pids

TASKS = int(os.environ.get("PIXELMILL_CHAOS_TASKS", "40"))
KILLS = int(os.environ.get("PIXELMILL_CHAOS_KILLS", "2"))
WORKERS = int(os.environ.get("PIXELMILL_CHAOS_WORKERS", "2"))
LEASE = 2.0

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def add_sources(campaign, count: int) -> None:
    for n in range(count):
        data = jpeg(photo(480, 360, seed=1000 + n))
        sha = hashlib.sha256(data).hexdigest()
        key = default_storage.save(f"sources/c{campaign.pk}/{sha}.jpg", ContentFile(data))
        SourceImage.objects.create(
            campaign=campaign, sha256=sha, display_name=f"{n}.jpg", file=key, width=480, height=360,
            format="JPEG", byte_size=len(data),
        )  # fmt: skip


def test_kills_and_a_redis_flush_lose_nothing(campaign, ready_recipes, redis_conn, monkeypatch, settings):
    monkeypatch.setenv("PIXELMILL_TASK_LEASE_SECONDS", str(LEASE))
    settings.PIXELMILL_RECONCILE_GRACE_SECONDS = 1
    settings.PIXELMILL_STARTED_JOB_SILENCE_SECONDS = 5
    add_sources(campaign, TASKS)
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])
    total = campaign.tasks.count()
    rng = random.Random(7)
    # Half the workers fork a work-horse per job, half run jobs in-process (the default class).
    classes = ["jobs.worker.ForkingPixelmillWorker", "jobs.worker.PixelmillWorker"]
    workers = [start_worker_process("default", worker_class=classes[n % 2]) for n in range(WORKERS)]
    worker_class = {worker.pid: classes[n % 2] for n, worker in enumerate(workers)}
    # Kills land at random points spread over the run, not all at the start.
    kill_points = sorted(rng.uniform(0.05, 0.9) for _ in range(KILLS))
    kills_left, flushed, killed_at = KILLS, False, {}
    recoveries = []
    deadline = time.monotonic() + 120 + total * 0.5
    try:
        while True:
            states = dict(campaign.tasks.values_list("pk", "state"))
            done = sum(state in Task.TERMINAL_STATES for state in states.values())
            for pk, at in list(killed_at.items()):
                if states[pk] in Task.TERMINAL_STATES:
                    recoveries.append(time.monotonic() - at)
                    del killed_at[pk]
            if done == total:
                break
            if time.monotonic() > deadline:
                stuck = campaign.tasks.exclude(state__in=Task.TERMINAL_STATES)
                pytest.fail(
                    f"stuck: {done}/{total} terminal; {list(stuck.values('pk', 'state', 'attempts'))}"
                )
            running = [pk for pk, state in states.items() if state == "running"]
            if kills_left and running and done >= kill_points[KILLS - kills_left] * total:
                forking = [(w, child_pids(w.pid)) for w in workers if "Forking" in worker_class[w.pid]]
                busy = [(worker, horses) for worker, horses in forking if horses]
                in_process = [w for w in workers if "Forking" not in worker_class[w.pid]]
                # Every other kill takes a work-horse alone; the others a whole worker mid-job.
                if kills_left % 2 and busy:
                    worker, horses = rng.choice(busy)
                    victims = horses
                elif busy or in_process:
                    worker, horses = rng.choice(busy + [(w, []) for w in in_process])
                    victims = [worker.pid, *horses]
                else:
                    victims = []
                if victims:
                    try:
                        for pid in victims:
                            os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue  # that horse had just finished; pick again
                    kills_left -= 1
                    for pk in running:
                        killed_at.setdefault(pk, time.monotonic())
            if not flushed and done >= total // 2:
                redis_conn.flushall()  # Redis restarted empty
                flushed = True
            for n, w in enumerate(workers):
                if w.poll() is not None:
                    workers[n] = start_worker_process("default", worker_class=worker_class[w.pid])
                    worker_class[workers[n].pid] = worker_class[w.pid]
            reconcile_task()
            time.sleep(0.25)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(20)

    states = list(campaign.tasks.values_list("state", flat=True))
    outputs = Output.objects.filter(task__campaign=campaign)
    print(
        f"\nchaos: {total} tasks, {KILLS - kills_left} kills, flush={flushed}; "
        f"succeeded {states.count('succeeded')}, lost {total - len(states)}, "
        f"longest recovery {max(recoveries, default=0):.1f} s"
    )
    assert states.count("succeeded") == total
    assert kills_left == 0 and flushed
    # Exactly one output per task and spec, each file present with the recorded size.
    assert outputs.count() == total * 5
    for output in outputs:
        assert default_storage.size(output.file.name) == output.byte_size

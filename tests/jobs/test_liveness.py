"""`python -m jobs.liveness worker|scheduler`, the container health checks: healthy only while a worker (or the
rqcron scheduler) of this host is registered in Redis, unhealthy once it stopped or Redis is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.redis_server import free_port
from tests.conftest import start_worker_process, stop_process, worker_environment
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def liveness(kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.liveness", kind],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**worker_environment(), **env},
        timeout=60,
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_liveness_follows_a_real_worker(redis_conn):
    assert liveness("worker").returncode == 1
    worker = start_worker_process("default", burst=False, env={"PIXELMILL_WORKER_THREADS": "1"})
    try:
        wait_until(lambda: liveness("worker").returncode == 0, 60, 0.5, "the running worker never showed")
    finally:
        stop_process(worker, 60)
    assert liveness("worker").returncode == 1, "a stopped worker unregisters, and the check says so"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_scheduler_liveness_follows_a_real_rqcron(redis_conn):
    assert liveness("scheduler").returncode == 1
    scheduler = subprocess.Popen(
        [sys.executable, "manage.py", "rqcron", "jobs.cron", "--logging-level", "WARNING"],
        cwd=ROOT,
        env=worker_environment(),
    )
    try:
        wait_until(lambda: liveness("scheduler").returncode == 0, 60, 0.5, "the scheduler never showed")
    finally:
        stop_process(scheduler, 60)


def test_liveness_fails_when_redis_does_not_answer():
    result = liveness("worker", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1 and "Redis did not answer" in result.stderr


def test_liveness_refuses_an_unknown_kind():
    assert liveness("web").returncode == 2

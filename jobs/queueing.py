"""How work reaches Redis: job ids that carry the attempt, bulk enqueue, scheduled retries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import django_rq
from rq import Queue

PROCESS_QUEUE = "default"
CONTROL_QUEUE = "control"
PROCESS_FUNC = "jobs.tasks.process_task"


def job_id_for(task_id: int, attempt: int) -> str:
    """The job id names the attempt, so a stale or duplicate job can be recognised and dropped."""
    return f"task-{task_id}-a{attempt}"


def get_process_queue() -> Queue:
    return django_rq.get_queue(PROCESS_QUEUE)


def enqueue_attempts(attempts: Iterable[tuple[int, int]]) -> int:
    """Enqueue (task_id, attempt) pairs in one Redis pipeline; returns how many were sent."""
    queue = get_process_queue()
    jobs = [
        Queue.prepare_data(
            PROCESS_FUNC,
            args=(task_id, attempt),
            job_id=job_id_for(task_id, attempt),
            result_ttl=600,
            failure_ttl=86400,
            description=f"process task {task_id} attempt {attempt}",
        )
        for task_id, attempt in attempts
    ]
    sent = 0
    for start in range(0, len(jobs), 1000):
        sent += len(queue.enqueue_many(jobs[start : start + 1000]))
    return sent


def schedule_attempt(task_id: int, attempt: int, at: datetime) -> None:
    """Enqueue an attempt for later; the worker's scheduler (rqworker --with-scheduler) releases it."""
    get_process_queue().enqueue_at(
        at,
        PROCESS_FUNC,
        task_id,
        attempt,
        job_id=job_id_for(task_id, attempt),
        result_ttl=600,
        failure_ttl=86400,
        description=f"process task {task_id} attempt {attempt}",
    )

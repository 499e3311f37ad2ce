"""How work reaches Redis: job ids that carry the attempt, bulk enqueue, scheduled retries, finding the
attempts Redis lost, and the workers alive to take them. Tasks and generations are both "rows with
numbered attempts"; a `JobKind` says which function runs them and how their job ids read."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.queue import EnqueueData
from rq.utils import now as utcnow
from rq.utils import utcparse
from rq.worker import BaseWorker

PROCESS_QUEUE = "default"
CONTROL_QUEUE = "control"
# RQ statuses of a job still to run. A "started" job is running, or its worker died (see missing_attempts).
WAITING_JOB_STATUSES = frozenset({"queued", "scheduled", "deferred"})
LIVE_JOB_STATUSES = WAITING_JOB_STATUSES | {"started"}


@dataclass(frozen=True)
class JobKind:
    func: str
    prefix: str
    description: str

    def job_id(self, pk: int, attempt: int) -> str:
        """The job id names the attempt, so a stale or duplicate job can be recognised and dropped."""
        return f"{self.prefix}-{pk}-a{attempt}"

    def job_data(self, pk: int, attempt: int) -> dict[str, Any]:
        return {
            "job_id": self.job_id(pk, attempt),
            "result_ttl": 600,
            "failure_ttl": 86400,
            "description": f"{self.description} {pk} attempt {attempt}",
        }


TASKS = JobKind("jobs.tasks.process_task", "task", "process task")
GENERATIONS = JobKind("jobs.generation.run_generation_task", "generation", "generate images for generation")
URL_IMPORTS = JobKind("jobs.url_imports.import_url_task", "urlimport", "download URL import")
DEFERRED_UPLOADS = JobKind(
    "jobs.deferred_uploads.import_deferred_upload_task", "upload", "bring in deferred upload"
)


def job_id_for(task_id: int, attempt: int) -> str:
    return TASKS.job_id(task_id, attempt)


def get_process_queue() -> Queue:
    return django_rq.get_queue(PROCESS_QUEUE)


def live_workers(queue: Queue | None = None, connection: Redis | None = None) -> list[BaseWorker]:
    """The RQ workers alive now (listening on `queue` if given), as the system page and the estimate count
    them. Every heartbeat keeps a worker registered, even after Redis lost its registration
    (jobs.worker.RegisteredWorker); one that stops beating drops out when its key expires, and one that
    stopped cleanly at once."""
    if connection is None:
        connection = queue.connection if queue is not None else django_rq.get_connection(PROCESS_QUEUE)
    return Worker.all(connection=connection, queue=queue)


def enqueue_attempts(
    attempts: Iterable[tuple[int, int]], kind: JobKind = TASKS, *, at_front: bool = False
) -> int:
    """Enqueue (pk, attempt) pairs, a thousand to a Redis pipeline; returns how many were sent.

    `at_front` is for work taken back from a lost worker or queue: it has waited longest already.

    RQ enqueues the first job of each thousand itself; the others are that job's hash with their own call
    and description, written with one HSET each and pushed together. Making, preparing and saving a Job
    object per attempt (three commands each) took 100,000 attempts about 7 s of this process's time.
    """
    queue = get_process_queue()
    pending = list(attempts)
    sent = 0
    for start in range(0, len(pending), 1000):
        first, *rest = pending[start : start + 1000]
        [job] = queue.enqueue_many([prepare_attempt(kind, *first, at_front=at_front)])
        sent += 1
        if not rest:
            continue
        template = job.to_dict()
        ids = [kind.job_id(pk, attempt) for pk, attempt in rest]
        pipe = queue.connection.pipeline()
        for job_id, (pk, attempt) in zip(ids, rest, strict=True):
            call = zlib.compress(job.serializer.dumps((kind.func, None, (pk, attempt), {})))
            pipe.hset(
                Job.key_for(job_id),
                mapping={**template, "data": call, "description": kind.job_data(pk, attempt)["description"]},
            )
        if at_front:
            pipe.lpush(queue.key, *ids)  # as one LPUSH each would leave them: the last at the front
        else:
            pipe.rpush(queue.key, *ids)
        pipe.execute()
        sent += len(rest)
    return sent


def prepare_attempt(kind: JobKind, pk: int, attempt: int, *, at_front: bool = False) -> EnqueueData:
    return Queue.prepare_data(kind.func, args=(pk, attempt), at_front=at_front, **kind.job_data(pk, attempt))


def schedule_attempt(pk: int, attempt: int, at: datetime, kind: JobKind = TASKS) -> None:
    """Enqueue an attempt for later; the worker's scheduler (rqworker --with-scheduler) releases it."""
    get_process_queue().enqueue_at(at, kind.func, pk, attempt, **kind.job_data(pk, attempt))


def missing_attempts(attempts: list[tuple[int, int]], kind: JobKind = TASKS) -> list[tuple[int, int]]:
    """The (pk, attempt) pairs whose job will never run: gone from Redis, failed or stopped there, or
    "started" by a worker that stopped sending heartbeats (killed whole).

    A worker killed before it claimed its row leaves the job failed while the row is still queued, so
    "the job exists" is not enough. Nor is "queued": a worker killed between popping a job off the list
    and marking it started leaves a job that says queued and is in no list (the chaos run found one),
    so a queued job must also be in its queue.
    """
    queue = get_process_queue()
    silent_since = utcnow() - timedelta(seconds=settings.PIXELMILL_STARTED_JOB_SILENCE_SECONDS)
    waiting: set[str] | None = None  # the queue's job ids, read once and only when needed
    missing: list[tuple[int, int]] = []
    for start in range(0, len(attempts), 1000):
        batch = attempts[start : start + 1000]
        pipe = queue.connection.pipeline(transaction=False)
        for pk, attempt in batch:
            pipe.hmget(Job.key_for(kind.job_id(pk, attempt)), ["status", "last_heartbeat"])
        for pair, (status, heartbeat) in zip(batch, pipe.execute(), strict=True):
            status = status.decode() if status else None
            if status == "queued" and waiting is None:
                waiting = set(queue.get_job_ids())
            if (
                status not in LIVE_JOB_STATUSES
                or status == "started"
                and heartbeat
                and utcparse(heartbeat.decode()) < silent_since
                or status == "queued"
                and waiting is not None
                and kind.job_id(*pair) not in waiting
            ):
                missing.append(pair)
    return missing

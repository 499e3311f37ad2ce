"""The system page: queue lengths, live workers and the last hour's work across every campaign."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import django_rq
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import BaseWorker

from dashboard.charts import horizontal_bars
from dashboard.metrics import state_counts
from dashboard.models import Task
from dashboard.views.charts import BAD, IDLE, OK, RUN, WAIT, WARN, time_charts
from jobs.queueing import live_workers

STATE_COLOURS = {
    "queued": WAIT,
    "running": RUN,
    "paused": WARN,
    "succeeded": OK,
    "failed": BAD,
    "dead": "#7f1d1d",
    "pending": IDLE,
}


@dataclass(frozen=True)
class WorkerCard:
    """One worker process: its RQ workers are its threads (PIXELMILL_WORKER_THREADS), one job each."""

    name: str
    host: str
    pid: int | None
    threads: int
    busy: int
    queues: list[str]
    succeeded: int
    failed: int
    born: datetime | None

    @property
    def state(self) -> str:
        return "busy" if self.busy else "idle"


def worker_cards(workers: list[BaseWorker]) -> list[WorkerCard]:
    processes: dict[tuple[str, int | None, str], list[BaseWorker]] = {}
    for worker in workers:
        # The threads of one process share its host and pid; a worker that gave no pid stands alone.
        key = (worker.hostname or "", worker.pid, "") if worker.pid else ("", None, worker.name)
        processes.setdefault(key, []).append(worker)
    cards = []
    for (host, pid, _), threads in processes.items():
        main = min(threads, key=lambda worker: (len(worker.name), worker.name))  # "<name>" before "<name>.t2"
        states = [str(getattr(worker.get_state(), "value", worker.get_state())) for worker in threads]
        cards.append(
            WorkerCard(
                name=main.name,
                host=host,
                pid=pid,
                threads=len(threads),
                busy=states.count("busy"),
                queues=main.queue_names(),
                succeeded=sum(worker.successful_job_count or 0 for worker in threads),
                failed=sum(worker.failed_job_count or 0 for worker in threads),
                born=min((worker.birth_date for worker in threads if worker.birth_date), default=None),
            )
        )
    return sorted(cards, key=lambda card: (-card.busy, card.name))


def queue_rows() -> list[tuple[str, list[tuple[str, int, str]]]]:
    rows = []
    for name in settings.RQ_QUEUES:
        queue = django_rq.get_queue(name)
        rows.append(
            (
                name,
                [
                    ("running", StartedJobRegistry(queue=queue).count, RUN),
                    ("waiting", queue.count, WAIT),
                    ("scheduled", ScheduledJobRegistry(queue=queue).count, IDLE),
                    ("failed in RQ", FailedJobRegistry(queue=queue).count, BAD),
                ],
            )
        )
    return rows


@require_GET
def system_status(request: HttpRequest) -> HttpResponse:
    """Queues, workers and the last hour's work across every campaign; `?live=1` is the refreshing part."""
    context: dict[str, object] = {"now": timezone.now()}
    try:
        workers = live_workers()
        context["workers"] = worker_cards(workers)
        context["worker_threads"] = len(workers)
        context["queue_chart"] = horizontal_bars("queues", "Jobs per queue", queue_rows())
    except RedisError as error:
        context["redis_error"] = str(error)
    states = state_counts(Task.objects.all())
    order = [state for state in STATE_COLOURS if states.get(state)]
    context["state_chart"] = horizontal_bars(
        "task-states",
        "Tasks by state",
        [("all campaigns", [(s, states[s], STATE_COLOURS[s]) for s in order])],
    )
    context.update(time_charts(Task.objects.all(), "hour", prefix="system-"))
    template = "dashboard/_system_live.html" if request.GET.get("live") else "dashboard/system.html"
    return render(request, template, context)

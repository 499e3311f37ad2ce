"""Pictures of how work goes: a campaign's throughput, task time and failures over time, and the system
page (queue lengths, live workers), drawn as server-side SVG."""

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
from rq import Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from dashboard.access import visible_campaign
from dashboard.causes import BY_SLUG
from dashboard.charts import Series, horizontal_bars, lines, stacked_bars
from dashboard.metrics import RANGES, describe_width, metrics_for, since_for, state_counts
from dashboard.models import Task

OK, BAD, RUN, WARN, WAIT, IDLE = "#16a34a", "#dc2626", "#2563eb", "#d97706", "#eab308", "#94a3b8"
CAUSE_COLOURS = {
    "rate_limited": "#f59e0b",
    "provider_down": "#ef4444",
    "provider_rejected": "#b91c1c",
    "timeout": "#8b5cf6",
    "unreadable": "#64748b",
    "unsuitable": "#0ea5e9",
    "worker_lost": "#ec4899",
    "setup": "#14b8a6",
    "internal_error": "#111827",
    "other": "#a3a3a3",
}
STATE_COLOURS = {
    "queued": WAIT,
    "running": RUN,
    "paused": WARN,
    "succeeded": OK,
    "failed": BAD,
    "dead": "#7f1d1d",
    "pending": IDLE,
}
RANGE_LABELS = {"all": "All time", "week": "Last 7 days", "day": "Last 24 hours", "hour": "Last hour"}


def time_charts(tasks, range_name: str, prefix: str) -> dict[str, object]:
    """The three time charts of a set of tasks, and the figures above them."""
    metrics = metrics_for(tasks, since=since_for(range_name))
    times = metrics.timeline.times() if metrics.timeline else []
    per = describe_width(metrics.timeline.width) if metrics.timeline else "bucket"
    errors = [
        Series(BY_SLUG[slug].label, values, CAUSE_COLOURS[slug]) for slug, values in metrics.errors.items()
    ]
    return {
        "metrics": metrics,
        "bucket": per,
        "throughput_chart": stacked_bars(
            f"{prefix}throughput",
            f"Tasks finished per {per}",
            f"tasks per {per}",
            times,
            [Series("Succeeded", metrics.succeeded, OK), Series("Failed", metrics.failed, BAD)],
            empty_text="No task has finished in this period.",
        ),
        "task_time_chart": lines(
            f"{prefix}task-time",
            "Task time: average and 95th percentile",
            "seconds",
            times,
            [Series("Average", metrics.average_seconds, RUN), Series("p95", metrics.p95_seconds, WARN)],
            empty_text="No task has succeeded in this period.",
        ),
        "errors_chart": stacked_bars(
            f"{prefix}errors",
            f"Failures by cause per {per}",
            f"failures per {per}",
            times,
            errors,
            empty_text="Nothing failed in this period.",
        ),
    }


def chosen_range(request: HttpRequest) -> str:
    value = request.GET.get("range", "all")
    return value if value in RANGES else "all"


@require_GET
def campaign_charts(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    range_name = chosen_range(request)
    return render(
        request,
        "dashboard/charts.html",
        {
            "campaign": campaign,
            "range": range_name,
            "ranges": RANGE_LABELS,
            **time_charts(campaign.tasks.all(), range_name, prefix=""),
        },
    )


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


def worker_cards(workers: list[Worker]) -> list[WorkerCard]:
    processes: dict[tuple[str, int | None, str], list[Worker]] = {}
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
        connection = django_rq.get_connection("default")
        workers = Worker.all(connection=connection)
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

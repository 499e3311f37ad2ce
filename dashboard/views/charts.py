"""A campaign's work over time (throughput, task time, failures by cause), drawn as server-side SVG."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.access import visible_campaign
from dashboard.causes import BY_SLUG
from dashboard.charts import Series, lines, stacked_bars
from dashboard.metrics import RANGES, describe_width, metrics_for, since_for

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

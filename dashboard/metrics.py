"""Figures for the charts, computed in the database: a campaign may hold 100,000 tasks, so rows are
bucketed by time in SQL and only (bucket, key, count) come back, never the tasks themselves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import (
    Count,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    Sum,
    Value,
)
from django.db.models.functions import Floor, Greatest, Ln
from django.utils import timezone

from dashboard.causes import CAUSES, OTHER, cause_for
from dashboard.models import Task, TaskQuerySet

# Bucket widths a person reads without arithmetic; the smallest that keeps a chart under TARGET_BUCKETS.
NICE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TARGET_BUCKETS = 60
# Task times are counted in logarithmic bins this many per e-fold (bins about 10% wide), so a p95 is
# read from a histogram the database builds, within about 5%, instead of from every duration.
BINS_PER_E = 10
RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column, on SQLite and PostgreSQL."""

    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra_context):
        # julianday() rather than strftime('%s'): a literal %s would be taken for a query parameter.
        # Days as a double leave 10:00:00 at 09:59:59.99999; rounding to the millisecond first fixes that.
        return self.as_sql(
            compiler,
            connection,
            template="CAST(ROUND((julianday(%(expressions)s) - 2440587.5) * 86400, 3) AS INTEGER)",
            **extra_context,
        )

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            template="CAST(FLOOR(EXTRACT(EPOCH FROM %(expressions)s)) AS BIGINT)",
            **extra_context,
        )


def bucket_width(span_seconds: float) -> int:
    return next((w for w in NICE_BUCKETS if span_seconds / w <= TARGET_BUCKETS), NICE_BUCKETS[-1])


@dataclass
class Timeline:
    """Equal time buckets from `start`; each chart series is one value per bucket."""

    start: int  # epoch seconds of the first bucket
    width: int  # seconds per bucket
    count: int

    @classmethod
    def covering(cls, first: datetime, last: datetime) -> Timeline:
        width = bucket_width((last - first).total_seconds())
        start = int(first.timestamp()) // width * width
        return cls(start, width, int(last.timestamp()) // width - start // width + 1)

    def index(self, bucket: int) -> int | None:
        index = bucket - self.start // self.width
        return index if 0 <= index < self.count else None

    def times(self) -> list[datetime]:
        return [datetime.fromtimestamp(self.start + i * self.width, tz=UTC) for i in range(self.count)]

    def bucket_expression(self) -> ExpressionWrapper:
        return ExpressionWrapper(EpochSeconds("finished_at") / Value(self.width), output_field=IntegerField())


@dataclass
class CampaignMetrics:
    timeline: Timeline | None
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    average_seconds: list[float | None] = field(default_factory=list)
    p95_seconds: list[float | None] = field(default_factory=list)
    errors: dict[str, list[int]] = field(default_factory=dict)  # cause slug -> per bucket
    overall_average_seconds: float | None = None
    overall_p95_seconds: float | None = None

    @property
    def finished(self) -> int:
        return sum(self.succeeded) + sum(self.failed)

    @property
    def peak_per_minute(self) -> float:
        """The busiest bucket's finished tasks, as a rate a person compares across charts."""
        if self.timeline is None:
            return 0.0
        busiest = max(s + f for s, f in zip(self.succeeded, self.failed, strict=True))
        return busiest * 60 / self.timeline.width


def finished_tasks(tasks: TaskQuerySet, since: datetime | None) -> TaskQuerySet:
    finished = tasks.filter(finished_at__isnull=False)
    return finished.filter(finished_at__gte=since) if since else finished


def metrics_for(tasks: TaskQuerySet, *, since: datetime | None = None) -> CampaignMetrics:
    """Throughput, task time (average and p95) and errors by cause per time bucket: four GROUP BYs."""
    finished = finished_tasks(tasks, since).order_by()
    span = finished.aggregate(first=Min("finished_at"), last=Max("finished_at"))
    if span["first"] is None:
        return CampaignMetrics(timeline=None)
    timeline = Timeline.covering(span["first"], span["last"])
    bucketed = finished.annotate(bucket=timeline.bucket_expression())
    metrics = CampaignMetrics(
        timeline,
        succeeded=[0] * timeline.count,
        failed=[0] * timeline.count,
        average_seconds=[None] * timeline.count,
        p95_seconds=[None] * timeline.count,
    )

    for row in bucketed.values("bucket", "state").annotate(n=Count("pk")):
        index = timeline.index(row["bucket"])
        if index is None:
            continue
        series = metrics.succeeded if row["state"] == Task.State.SUCCEEDED else metrics.failed
        series[index] += row["n"]

    fill_task_times(metrics, bucketed.filter(state=Task.State.SUCCEEDED, duration_ms__isnull=False))

    errors: dict[str, list[int]] = {}
    failures = bucketed.filter(state__in=[Task.State.FAILED, Task.State.DEAD])
    for row in failures.values("bucket", "error_code").annotate(n=Count("pk")):
        index = timeline.index(row["bucket"])
        if index is not None:
            slug = cause_for(row["error_code"]).slug
            errors.setdefault(slug, [0] * timeline.count)[index] += row["n"]
    order = [cause.slug for cause in (*CAUSES, OTHER)]
    metrics.errors = {slug: errors[slug] for slug in order if slug in errors}
    return metrics


def fill_task_times(metrics: CampaignMetrics, succeeded: TaskQuerySet) -> None:
    """Average exactly (a sum and a count per bucket); p95 from a log-binned histogram per bucket."""
    assert metrics.timeline is not None
    log_bin = ExpressionWrapper(
        Floor(Ln(Greatest(F("duration_ms"), Value(1.0))) * Value(float(BINS_PER_E))),
        output_field=IntegerField(),
    )
    histograms: dict[int, dict[int, int]] = {}
    totals: dict[int, tuple[float, int]] = {}
    rows = (
        succeeded.annotate(log_bin=log_bin)
        .values("bucket", "log_bin")
        .annotate(n=Count("pk"), ms=Sum("duration_ms"))
    )
    for row in rows:
        index = metrics.timeline.index(row["bucket"])
        if index is None:
            continue
        histograms.setdefault(index, {})[int(row["log_bin"])] = row["n"]
        total, count = totals.get(index, (0.0, 0))
        totals[index] = (total + row["ms"], count + row["n"])
    overall: dict[int, int] = {}
    for index, (total, count) in totals.items():
        metrics.average_seconds[index] = total / count / 1000
        metrics.p95_seconds[index] = percentile_from_bins(histograms[index], 0.95) / 1000
        for log_bin, n in histograms[index].items():
            overall[log_bin] = overall.get(log_bin, 0) + n
    if totals:
        metrics.overall_average_seconds = (
            sum(t for t, _ in totals.values()) / sum(c for _, c in totals.values()) / 1000
        )
        metrics.overall_p95_seconds = percentile_from_bins(overall, 0.95) / 1000


def percentile_from_bins(bins: dict[int, int], fraction: float) -> float:
    """The geometric middle of the bin holding the `fraction` quantile."""
    wanted = math.ceil(fraction * sum(bins.values()))
    seen = 0
    for log_bin in sorted(bins):
        seen += bins[log_bin]
        if seen >= wanted:
            return math.exp((log_bin + 0.5) / BINS_PER_E)
    raise ValueError("empty histogram")


def since_for(range_name: str | None, now: datetime | None = None) -> datetime | None:
    window = RANGES.get(range_name or "")
    return (now or timezone.now()) - window if window else None


def state_counts(tasks: TaskQuerySet) -> dict[str, int]:
    return dict(tasks.order_by().values_list("state").annotate(n=Count("pk")))


def describe_width(seconds: int) -> str:
    """“10 seconds”, “minute”, “5 minutes”, “hour”, “6 hours”, “day”: what one bar stands for."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"

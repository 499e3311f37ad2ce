"""/metrics for Prometheus: every process's figures on this machine, and the figures read at scrape time from the database and Redis."""

from __future__ import annotations

import glob
import hmac
import logging
import os
import time
from collections.abc import Iterator

import django_rq
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from dashboard.models import Campaign, Provider, Task
from jobs.breaker import CircuitBreaker
from jobs.providers.client import ClientPolicy

logger = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Tasks by state, provider money spent and campaigns whose remote work is paused: counted now."""

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "pixelmill_tasks", "Tasks by state, counted in the database.", labels=["state"]
        )
        counts = dict(Task.objects.order_by().values_list("state").annotate(Count("pk")))
        for state in Task.State.values:
            tasks.add_metric([state], counts.get(state, 0))
        yield tasks

        spent = Campaign.objects.aggregate(total=Sum("remote_spent"))["total"] or 0
        budget = GaugeMetricFamily(
            "pixelmill_budget_spent",
            "Provider calls booked against campaign budgets, all campaigns (currency label).",
            labels=["currency"],
        )
        budget.add_metric([settings.PIXELMILL_CURRENCY], float(spent))
        yield budget

        paused = GaugeMetricFamily(
            "pixelmill_campaigns_remote_paused",
            "Campaigns whose remote work waits (credits_exhausted, budget_reached).",
            labels=["reason"],
        )
        for code, count in (
            Campaign.objects.exclude(remote_paused_reason="")
            .order_by()
            .values_list("remote_paused_code")
            .annotate(Count("pk"))
        ):
            paused.add_metric([code or "unknown"], count)
        yield paused


class RedisCollector(Collector):
    """Queue depth and the age of each queue's oldest waiting job; each provider's circuit breaker."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("pixelmill_queue_jobs", "Jobs waiting in each RQ queue.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "pixelmill_queue_oldest_job_age_seconds",
            "How long the job at the head of each RQ queue has waited (0 when empty).",
            labels=["queue"],
        )
        scheduled = GaugeMetricFamily(
            "pixelmill_queue_scheduled_jobs",
            "Jobs scheduled for later in each queue (retries after a backoff, waits).",
            labels=["queue"],
        )
        now = time.time()
        for name in settings.RQ_QUEUES:
            queue = django_rq.get_queue(name)
            depth.add_metric([name], queue.count)
            scheduled.add_metric([name], queue.scheduled_job_registry.count)
            head = queue.get_job_ids(0, 1)
            # None when the job expired between the two reads: the queue is as good as empty.
            job = queue.fetch_job(head[0]) if head else None
            enqueued = job.enqueued_at if job is not None else None
            oldest.add_metric([name], max(0.0, now - enqueued.timestamp()) if enqueued else 0.0)
        yield from (depth, oldest, scheduled)

        breaker = GaugeMetricFamily(
            "pixelmill_provider_circuit_open",
            "1 while a provider's circuit breaker is open (nobody calls it), else 0.",
            labels=["provider"],
        )
        policy = ClientPolicy.from_settings().breaker
        connection = django_rq.get_connection("default")
        for slug in Provider.objects.filter(is_active=True).values_list("slug", flat=True):
            open_for = CircuitBreaker(connection, slug, policy).open_for()
            breaker.add_metric([slug], 1.0 if open_for else 0.0)
        yield breaker


class GuardedCollector(Collector):
    """One source failing (Redis down) leaves the others in the scrape and says so in `pixelmill_source_up`."""

    def __init__(self, sources: dict[str, Collector]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pixelmill_source_up", "1 when this scrape could read the source, else 0.", labels=["source"]
        )
        for name, source in self.sources.items():
            try:
                metrics = list(source.collect())
            except Exception as error:
                logger.warning("metrics source failed", extra={"source": name, "error": repr(error)})
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up


class StartedProcessesCollector(MultiProcessCollector):
    """prometheus-client's sum of the folder's files, less the files a process is creating at this very moment:
    such a file is empty until its owner sizes it, and prometheus-client fails the whole scrape on it. A new
    work-horse per job makes that moment frequent."""

    def collect(self) -> Iterator[Metric]:
        files = []
        for name in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(name) > 0:
                    files.append(name)
            except FileNotFoundError:
                continue  # a live gauge of a process that just ended
        return iter(self.merge(files, accumulate=True))


def scrape(*, with_cluster: bool = True) -> bytes:
    """Every process's figures from the multiprocess folder, plus (unless a worker machine serves its own
    figures) what the database and Redis hold now."""
    registry = CollectorRegistry()
    StartedProcessesCollector(registry, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    if with_cluster:
        registry.register(GuardedCollector({"database": DatabaseCollector(), "redis": RedisCollector()}))
    return generate_latest(registry)


def token_matches(header: str) -> bool:
    """`Authorization: Bearer <PIXELMILL_METRICS_TOKEN>`, compared in constant time."""
    scheme, _, given = header.partition(" ")
    expected = settings.PIXELMILL_METRICS_TOKEN
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Not a public page: without PIXELMILL_METRICS_TOKEN it does not exist (404), and a request without that
    token gets 401."""
    if not settings.PIXELMILL_METRICS_TOKEN:
        raise Http404
    if not token_matches(request.headers.get("Authorization", "")):
        response = HttpResponse("a bearer token is needed\n", content_type="text/plain", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="pixelmill-metrics"'
        return response
    response = HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response

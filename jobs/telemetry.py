"""Prometheus figures that workers and web processes record, summed across every process of a machine."""

from __future__ import annotations

import atexit
import os
import socket
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import mark_process_dead

# Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by dashboard.settings before anything imports this):
# each process writes its figures to files named after it, and a scrape sums the files. Containers that
# share the folder on one machine (compose's `metrics` volume) all run as pid 1, so a file is named after
# the host name and the pid, not the pid alone.
HOST = socket.gethostname()


def process_identifier() -> str:
    return f"{HOST}-{os.getpid()}"


MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if MULTIPROCESS:
    values.ValueClass = values.MultiProcessValue(process_identifier)

# Seconds: a local render takes tens of milliseconds, a remote-bound attempt can wait on a provider for minutes.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

TASK_SECONDS = Histogram(
    "pixelmill_task_duration_seconds",
    "One attempt of one task, from its claim to its outcome (succeeded, failed, deferred, paused).",
    ["outcome"],
    buckets=DURATION_BUCKETS,
)
STEP_SECONDS = Histogram(
    "pixelmill_step_duration_seconds",
    "One step of a succeeded attempt: decode, each recipe operation, render, store.",
    ["step"],
    buckets=DURATION_BUCKETS,
)
JOBS_IN_PROGRESS = Gauge(
    "pixelmill_tasks_in_progress",
    "Task attempts running now in live worker processes.",
    multiprocess_mode="livesum",
)
PROVIDER_CALLS = Counter(
    "pixelmill_provider_calls_total",
    "HTTP requests to AI providers by provider and outcome (ok, rate_limited, or the error code).",
    ["provider", "outcome"],
)
PROVIDER_RATE_LIMITED = Counter(
    "pixelmill_provider_rate_limited_total", "429 answers from AI providers.", ["provider"]
)
CIRCUIT_OPENED = Counter(
    "pixelmill_provider_circuit_opened_total", "Times a provider's circuit breaker opened.", ["provider"]
)
RECONCILER_REPAIRS = Counter(
    "pixelmill_reconciler_repairs_total",
    "Rows the reconciler repaired, by what it found (worker_lost, queue_lost, dead, scheduled_released, …).",
    ["repair"],
)


def record_task(outcome: str, seconds: float) -> None:
    TASK_SECONDS.labels(outcome=outcome).observe(seconds)


def record_steps(timings_ms: dict[str, float]) -> None:
    for step, milliseconds in timings_ms.items():
        STEP_SECONDS.labels(step=step).observe(milliseconds / 1000)


def record_provider_call(provider: str, outcome: str) -> None:
    PROVIDER_CALLS.labels(provider=provider, outcome=outcome).inc()
    if outcome == "rate_limited":
        PROVIDER_RATE_LIMITED.labels(provider=provider).inc()


def record_repairs(report: dict[str, int]) -> None:
    for repair, count in report.items():
        if count:
            RECONCILER_REPAIRS.labels(repair=repair).inc(count)


def mark_dead(pid: int) -> None:
    """Drop a finished process's live gauges (its counters and histograms keep counting in the sum)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if MULTIPROCESS and directory:
        mark_process_dead(f"{HOST}-{pid}", directory)


def reset_directory(directory: Path) -> None:
    """Empty the folder before a machine's processes start: files left by an earlier run would add up."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


if MULTIPROCESS:
    # A forked work-horse leaves through os._exit and skips this: its worker marks it (jobs.worker).
    atexit.register(lambda: mark_dead(os.getpid()))

"""Remote-bound throughput: how close the workers get to a provider's own limit.

The provider simulator plays a provider that answers in 100 ms and allows 20 requests/s and 10 concurrent
requests; the provider row in Pixelmill is configured with the same limits. N small product photos go
through a recipe whose only expensive step is remote background removal, on W real rqworker processes,
each with T threads (PIXELMILL_WORKER_THREADS; `--workers 4` is 4 processes of one thread, `2x5` two of five;
`make run` starts 2x4 on two cores). Throughput comes from the simulator's request log, two ways: the whole
run (successful calls over the span from the first to the last one: the workers' start-up before the first
call is not the provider's business, the last images' tail is counted) and the steady state (the middle 80%
of the calls, without ramp-up and tail). Memory is the peak resident size of all worker processes (and their
work-horses) sampled while the run goes; CPU is what the workers and the simulator each used.

The simulator cuts out by a brightness threshold (`cheap_cutouts`) unless `--real-cutouts`: its real
segmentation costs about 70 ms of CPU a call, which at 20 calls/s would take 1.4 of the two cores from
the workers being measured; a real provider's work runs on its own machines (the 100 ms latency stands for it).

    python -m benchmarks.remote_throughput [--images 300] [--workers 2x4,1x10,2x5,4] [--real-cutouts]

Everything runs in a throwaway directory with its own embedded Redis and SQLite database.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import children

ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS, RATE, CONCURRENCY = 100.0, 20.0, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument(
        "--workers",
        default="2x4,1x10,2x5,4",
        help="Comma-separated worker processes to compare, each N or NxTHREADS.",
    )
    parser.add_argument("--worker-class", default=None, help="e.g. rq.SimpleWorker (no fork per job).")
    parser.add_argument(
        "--real-cutouts", action="store_true", help="The simulator segments for real, on these cores."
    )
    parser.add_argument("--save-logs", type=Path, help="Write each run's simulator log here, as JSON.")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in (item.split("x") + ["1"])[:2]) for item in args.workers.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-remote-"))
    sys.path.insert(0, str(ROOT))
    from dashboard.redis_server import EmbeddedRedis

    with EmbeddedRedis() as redis_server:
        os.environ.update(
            {
                "REDIS_URL": redis_server.url,
                "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
                "PIXELMILL_MEDIA_ROOT": str(workdir / "media"),
                "PIXELMILL_DATA_DIR": str(workdir),
                "PIXELMILL_LOG_LEVEL": "WARNING",
                "PIXELMILL_BENCH_KEY": "sim-key",
                "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            }
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(
            f"Provider: {LATENCY_MS:.0f} ms latency, {RATE:.0f} requests/s (burst 2), {CONCURRENCY} concurrent, "
            f"{'real' if args.real_cutouts else 'cheap'} cut-outs; {args.images} images per run; "
            f"{os.cpu_count()} cores"
        )
        for workers, threads in shapes:
            load_before = os.getloadavg()[0]
            result = run(args.images, workers, threads, workdir, args.worker_class, args.real_cutouts)
            if args.save_logs:
                args.save_logs.mkdir(parents=True, exist_ok=True)
                (args.save_logs / f"{workers}x{threads}.json").write_text(json.dumps(result.log))
            in_flight = min(workers * threads, CONCURRENCY)
            print(
                f"  {workers} worker process(es) x {threads} thread(s): whole run {result.rate:5.1f} requests/s "
                f"= {100 * result.rate / RATE:5.1f}% of the limit, steady (middle 80%) {result.steady:5.1f} = "
                f"{100 * result.steady / RATE:5.1f}%; 429s from the provider: {result.rejected}\n"
                f"    peak memory of all workers {result.peak_mb:.0f} MB ({result.peak_mb / workers:.0f} MB per "
                f"process, {result.peak_mb / in_flight:.0f} MB per request in flight); CPU per call: workers "
                f"{result.worker_cpu_ms:.0f} ms, simulator {result.simulator_cpu_ms:.0f} ms; load average "
                f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
            )
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Result:
    rate: float  # successful calls per second, first to last
    steady: float  # the same over the middle 80% of the calls
    rejected: int  # 429s the provider sent
    peak_mb: float
    worker_cpu_ms: float  # per successful call
    simulator_cpu_ms: float
    log: list[dict[str, Any]]


def run(
    images: int, workers: int, threads: int, workdir: Path, worker_class: str | None, real_cutouts: bool
) -> Result:
    import django_rq

    from dashboard.models import Campaign, Provider, Recipe, StepResult, Task, Team
    from dashboard.services import process_campaign
    from simulator import ProviderSimulator, SimulatorConfig
    from tests.factories import add_source
    from tests.jobs.images import jpeg, product_on_white

    django_rq.get_connection("default").flushdb()
    Campaign.objects.all().delete()
    Recipe.objects.all().delete()
    StepResult.objects.all().delete()  # each run pays for its calls: the point is to measure them
    Provider.objects.all().delete()
    team, _ = Team.objects.get_or_create(name="Bench")
    config = SimulatorConfig(
        latency_ms=LATENCY_MS,
        rate_per_second=RATE,
        burst=2,
        concurrency=CONCURRENCY,
        cheap_cutouts=not real_cutouts,
    )
    with ProviderSimulator(config) as simulator:
        provider = Provider.objects.create(
            name="Simulated remove.bg", slug="bench-removebg", kind="removebg",
            base_url=simulator.url("removebg"), api_key_env="PIXELMILL_BENCH_KEY",
            requests_per_second=RATE, concurrency=CONCURRENCY, timeout_seconds=10,
        )  # fmt: skip
        recipe = Recipe.objects.create(name="Bench cut-out", slug="bench-cut-out")
        recipe.steps.create(position=0, operation="remove_background", params={}, provider=provider)
        recipe.outputs.create(position=0, name="thumb", width=150, height=150, fit="pad", format="jpeg")
        recipe.publish_version()
        campaign = Campaign.objects.create(name=f"Bench {workers}x{threads}", team=team)
        for n in range(images):
            add_source(campaign, jpeg(product_on_white(200, 150, seed=n)), f"{n}.jpg")
        process_campaign(campaign, [recipe])

        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "default", "--burst", "--verbosity", "0",
                 *(["--worker-class", worker_class] if worker_class else [])],
                cwd=ROOT, env={**os.environ, "PIXELMILL_WORKER_THREADS": str(threads)}, stdout=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]  # fmt: skip
        # The simulator serves from threads of this process, which otherwise only waits and samples memory.
        cpu_before = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
        peak = PeakMemory([proc.pid for proc in procs])
        peak.start()
        try:
            for proc in procs:
                proc.wait()
        finally:
            peak.stop()
        simulator_cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu_before[0]
        worker_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before[1]
        log = [entry for entry in simulator.log() if entry["provider"] == "removebg"]
    done = Task.objects.filter(campaign=campaign, state=Task.State.SUCCEEDED).count()
    if done != images:
        print(f"    warning: {images - done} task(s) did not succeed")
    ok = sorted(entry["started"] for entry in log if entry["outcome"] == "ok")
    rejected = sum(entry["status"] == 429 for entry in log)
    middle = ok[len(ok) // 10 : len(ok) - len(ok) // 10]
    return Result(
        rate=calls_per_second(ok),
        steady=calls_per_second(middle),
        rejected=rejected,
        peak_mb=peak.peak_kb / 1024,
        worker_cpu_ms=1000 * worker_cpu / max(1, len(ok)),
        simulator_cpu_ms=1000 * simulator_cpu / max(1, len(log)),
        log=log,
    )


def calls_per_second(started: list[float]) -> float:
    """Calls per second between the first and the last of these start times (n calls make n - 1 gaps)."""
    return (len(started) - 1) / (started[-1] - started[0]) if len(started) > 1 else 0.0


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class PeakMemory(threading.Thread):
    """Samples the summed VmRSS of some processes and their children (work-horses) every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            total = 0
            for pid in self.pids:
                for member in (pid, *children(pid)):
                    total += rss_kb(member)
            self.peak_kb = max(self.peak_kb, total)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    main()

"""A real worker's resident memory, from its start through one 24 MP photo in the Social ads pack.

Starts `manage.py rqworker control default --with-scheduler` as `make run` does (the worker class from
PIXELMILL_WORKER_CLASS, or `--worker-class`), waits until it is idle and reads its resident size, then
enqueues one task (the corpus photo, default photo-24mp, through the ready recipe "Social ads pack") and
reads the peak resident size (VmHWM, /proc) of the worker and, with a forking worker class, of the
work-horse RQ forks for the job, sampled every few milliseconds while it lives (VmHWM only grows, so the
last sample holds its peak). Target: at most 100 MB for each process.

Then, in a fresh process set up as a worker is (Django, `jobs.worker.warm_up`), the same render phase by
phase: resident size before each phase and its peak during it (VmHWM, reset at each phase), so the gap to
the target can be named.

    python -m benchmarks.worker_memory [--photo photo-24mp] [--worker-class jobs.worker.ForkingPixelmillWorker]

Everything runs in a throwaway directory with its own embedded Redis and SQLite database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.processes import children

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 100
WORKER_CLASSES = ("jobs.worker.PixelmillWorker", "jobs.worker.ForkingPixelmillWorker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="photo-24mp", help="a real-corpus photo id (make corpus)")
    parser.add_argument(
        "--worker-class",
        default=",".join(WORKER_CLASSES),
        help="comma-separated worker classes to measure, one worker each",
    )
    parser.add_argument("--repeat", type=int, default=1, help="tasks run one after another per worker")
    parser.add_argument("--phases-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.phases_child:
        print_phases(Path(args.phases_child))
        return
    from benchmarks.corpus import REAL_CORPUS_DIR, real_corpus
    from benchmarks.web_server import set_up_django
    from dashboard.redis_server import EmbeddedRedis

    (photo,) = real_corpus(REAL_CORPUS_DIR, (args.photo,))
    data = photo.read()
    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-worker-memory-"))
    try:
        with EmbeddedRedis() as redis_server:
            set_up_django(workdir, redis_server.url)
            print(
                f"{photo.label} ({len(data) / 1e6:.1f} MB) through the Social ads pack; target ≤ {TARGET_MB} MB"
            )
            for worker_class in args.worker_class.split(","):
                figures = measure(worker_class, data, args.repeat)
                print(
                    f"  {worker_class}: idle worker {figures['idle_mb']:.1f} MB (peak {figures['idle_peak_mb']:.1f}); "
                    f"worker peak {figures['worker_peak_mb']:.1f} MB; "
                    + (
                        f"work-horse peak {figures['horse_peak_mb']:.1f} MB"
                        if figures["horse_peak_mb"]
                        else "no work-horse (runs jobs in-process)"
                    )
                    + f"; task {figures['seconds']:.1f} s"
                )
            print(
                "Phase by phase, in one process set up as a worker (resident MB before it, peak MB during it):"
            )
            subprocess.run(
                [sys.executable, "-m", "benchmarks.worker_memory", "--phases-child", str(photo.path)],
                cwd=ROOT, env=os.environ.copy(), check=True,
            )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(worker_class: str, data: bytes, repeat: int) -> dict[str, float]:
    from rq import Worker

    from dashboard.models import Campaign, Recipe, Task, Team
    from dashboard.ready_recipes import install_ready_recipes
    from dashboard.services import process_campaign
    from jobs.queueing import get_process_queue
    from tests.factories import add_source

    install_ready_recipes()
    recipe = Recipe.objects.get(slug="social-ads-pack")
    team, _ = Team.objects.get_or_create(name="Bench")
    connection = get_process_queue().connection
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "control", "default", "--with-scheduler", "--verbosity", "0",
         "--worker-class", worker_class],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any(w.pid == worker.pid for w in Worker.all(connection=connection)), 60)
        time.sleep(1.0)  # the scheduler and the other threads are up
        idle_kb, idle_peak_kb = status_kb(worker.pid, "VmRSS"), status_kb(worker.pid, "VmHWM")
        horses = HorsePeaks(worker.pid)
        horses.start()
        started = time.monotonic()
        for n in range(repeat):
            campaign = Campaign.objects.create(name=f"Memory {worker_class} {n}", team=team)
            add_source(campaign, data, "photo.jpg")
            process_campaign(campaign, [recipe])
            finished = Task.objects.filter(campaign=campaign, state__in=("succeeded", "failed", "dead"))
            wait_for(finished.exists, 300)
            task = Task.objects.get(campaign=campaign)
            if task.state != "succeeded":
                raise RuntimeError(f"the task ended {task.state}: {task.error_code} {task.error_message}")
        seconds = (time.monotonic() - started) / repeat
        worker_peak_kb = status_kb(worker.pid, "VmHWM")
        horses.stop()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return {
        "idle_mb": idle_kb / 1024,
        "idle_peak_mb": idle_peak_kb / 1024,
        "worker_peak_mb": worker_peak_kb / 1024,
        "horse_peak_mb": horses.peak_kb / 1024,
        "seconds": seconds,
    }


def print_phases(path: Path) -> None:
    import django

    django.setup()
    from dashboard.ready_recipes import ready_pipeline
    from jobs.rendering import run_pipeline
    from jobs.worker import warm_up

    rows: list[tuple[str, int, int]] = []
    running = ["python, Django set up"]

    def mark(next_phase: str) -> None:
        """The phase running ends (its resident size now, its peak) and `next_phase` begins."""
        rows.append((running[0], status_kb(os.getpid(), "VmRSS"), status_kb(os.getpid(), "VmHWM")))
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the resident size
        running[0] = next_phase

    mark("warm_up: the job modules")
    warm_up()
    mark("the photo's bytes, the recipe")
    data = path.read_bytes()
    steps, specs = ready_pipeline("social-ads-pack")
    run_pipeline(data, steps, specs, on_step=mark)
    mark("")
    for phase, resident, peak in rows:
        print(f"  {phase:32} {resident / 1024:6.1f} MB at its end, peak {peak / 1024:6.1f} MB")


class HorsePeaks(threading.Thread):
    """The highest VmHWM of any work-horse of a worker, read every 2 ms while each lives. The scheduler,
    a long-lived child of its own, is not a horse: children present before the first job are left out."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.ignored = set(children(pid))
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.002):
            for child in children(self.pid):
                if child not in self.ignored:
                    with contextlib.suppress(OSError, RuntimeError):
                        self.peak_kb = max(self.peak_kb, status_kb(child, "VmHWM"))

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        time.sleep(0.05)


if __name__ == "__main__":
    main()

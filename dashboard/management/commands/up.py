"""Bring the whole app up in the foreground: Redis (embedded unless REDIS_URL), web, workers, scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from dashboard.redis_server import EmbeddedRedis
from jobs.telemetry import reset_directory


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=settings.PIXELMILL_PORT)
        parser.add_argument("--bind", default=settings.PIXELMILL_BIND)
        parser.add_argument("--workers", type=int, default=settings.PIXELMILL_WORKERS)
        parser.add_argument("--no-setup", action="store_true", help="Skip migrate, setup and collectstatic.")

    def handle(self, *args, port: int, bind: str, workers: int, no_setup: bool, **options) -> None:
        if not no_setup:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("pixelmill_setup")
            call_command("collectstatic", interactive=False, verbosity=0)

        # Figures left by an earlier run would add up with this one's (prometheus-client's multiprocess mode).
        reset_directory(settings.PROMETHEUS_MULTIPROC_DIR)
        env = os.environ.copy()
        redis_server = None
        if "REDIS_URL" not in os.environ:
            redis_server = EmbeddedRedis(
                port=settings.PIXELMILL_REDIS_PORT, data_dir=settings.DATA_DIR / "redis"
            )
            env["REDIS_URL"] = redis_server.start()
            self.stdout.write(f"Embedded Redis on {env['REDIS_URL']} (data in {redis_server.data_dir})")

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            Child(
                "web",
                [
                    sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--config", "python:dashboard.gunicorn_config",
                    "--bind", f"{bind}:{port}", "--workers", "2",
                ],
            ),
            Child("scheduler", [*manage, "rqcron", "jobs.cron", "--logging-level", "WARNING"]),
        ] + [
            Child(
                f"worker-{n}",
                [*manage, "rqworker", "control", "default", "--with-scheduler", "--verbosity", "0",
                 "--max-jobs", str(settings.PIXELMILL_WORKER_MAX_JOBS)],
            )
            for n in range(1, workers + 1)
        ]  # fmt: skip

        stopping = False

        def request_stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        for child in children:
            child.process = subprocess.Popen(child.argv, env=env, cwd=settings.BASE_DIR)
        self.stdout.write(
            self.style.SUCCESS(
                f"Pixelmill is up: http://{bind}:{port}/  ({workers} worker(s), scheduler, web). Ctrl-C stops all."
            )
        )
        try:
            while not stopping:
                time.sleep(0.5)
                for child in children:
                    if child.process.poll() is None:
                        continue
                    # Restart a crashed child, but give up on one that crash-loops.
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                    if len(child.restarts) > 5:
                        self.stderr.write(f"{child.name} keeps exiting; stopping everything.")
                        stopping = True
                        break
                    if child.process.returncode == 0 and child.name.startswith("worker"):
                        child.restarts.pop()  # it ran its --max-jobs: a planned recycle, not a crash
                    else:
                        self.stderr.write(f"{child.name} exited with {child.process.returncode}; restarting.")
                    child.process = subprocess.Popen(child.argv, env=env, cwd=settings.BASE_DIR)
        finally:
            self.stdout.write("Stopping…")
            for child in children:
                if child.process and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for child in children:
                if child.process is None:
                    continue
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
            if redis_server:
                redis_server.stop()
            self.stdout.write("Stopped.")

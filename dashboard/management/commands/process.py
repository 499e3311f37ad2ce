"""Import every image in a folder, process it with recipes, show progress, summarise, optionally export a ZIP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rq import Worker

from dashboard import services
from dashboard.exports import campaign_zip
from dashboard.intake import import_directory
from dashboard.models import Campaign, Progress, Recipe, Task, Team
from dashboard.redis_server import EmbeddedRedis
from jobs.queueing import get_process_queue


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument(
            "--recipe", action="append", required=True, help="Recipe slug; repeat for several."
        )
        parser.add_argument(
            "--campaign", help="Campaign name (created if missing). Default: the folder name."
        )
        parser.add_argument("--team", default="Marketing", help="Team that owns a new campaign.")
        parser.add_argument(
            "--wait", action="store_true", help="Show progress until every task has finished."
        )
        parser.add_argument(
            "--export", type=Path, help="Write the campaign ZIP here when done (implies --wait)."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Start this many burst workers for the run. Default: one per core if no worker is running.",
        )

    def handle(self, *args, directory: Path, recipe: list[str], **options) -> None:
        with self.redis_available():
            self.run(directory, recipe, options)

    @contextmanager
    def redis_available(self) -> Iterator[None]:
        """Use the configured Redis; with none configured and none running, bring an embedded one for the run."""
        try:
            get_process_queue().connection.ping()
        except redis.ConnectionError:
            if "REDIS_URL" in os.environ:
                raise CommandError(f"Redis at {settings.REDIS_URL} does not answer.") from None
            self.stdout.write("No Redis running; starting an embedded one for this run.")
            with EmbeddedRedis(port=settings.PIXELMILL_REDIS_PORT, data_dir=settings.DATA_DIR / "redis"):
                yield
            return
        yield

    def run(self, directory: Path, recipe: list[str], options: dict) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory.")
        recipes = list(Recipe.objects.filter(slug__in=recipe, is_active=True))
        unknown = set(recipe) - {r.slug for r in recipes}
        if unknown:
            known = ", ".join(Recipe.objects.filter(is_active=True).values_list("slug", flat=True))
            raise CommandError(f"Unknown recipe {', '.join(sorted(unknown))}. Available: {known}")

        team, _ = Team.objects.get_or_create(name=options["team"])
        campaign, _ = Campaign.objects.get_or_create(
            name=options["campaign"] or directory.resolve().name, team=team
        )

        started = time.monotonic()
        report = import_directory(campaign, directory)
        self.stdout.write(
            f"Imported {len(report.accepted)} image(s) into “{campaign.name}” (#{campaign.pk}); "
            f"{len(report.duplicates)} already there, {len(report.refused)} refused."
        )
        for refusal in report.refused:
            self.stderr.write(f"  refused {refusal.name}: {refusal.reason}")

        processed = services.process_campaign(campaign, recipes)
        tasks = Task.objects.filter(campaign=campaign, recipe_version__recipe__in=recipes)
        if processed.created:
            self.stdout.write(f"Enqueued {processed.created} task(s).")
        elif not tasks.unfinished().exists():
            self.stdout.write(
                f"Nothing new to process: every image already has these recipe versions "
                f"({tasks.count()} task(s), all finished)."
            )

        wait = options["wait"] or options["export"] is not None
        if not wait:
            return
        enqueued_at = time.monotonic()
        self.wait_for(tasks, options["workers"])
        elapsed = time.monotonic() - enqueued_at
        self.summarise(campaign, tasks, report, started, elapsed, options["export"])

    def summarise(self, campaign, tasks, report, started: float, elapsed: float, export: Path | None) -> None:
        progress = Progress.for_tasks(tasks)
        summary = (
            f"\nSucceeded {progress.succeeded}, failed {progress.count('failed')}, dead {progress.count('dead')} "
            f"of {progress.total} task(s)"
        )
        if elapsed >= 0.1:  # a rate is only worth printing for work this run waited for
            summary += f" in {elapsed:.1f} s: {progress.total / elapsed:.2f} tasks/s"
            if report.accepted:
                summary += f", {len(report.accepted) / (time.monotonic() - started):.2f} images/s overall"
        self.stdout.write(summary + ".")
        for task in tasks.failed().select_related("source", "recipe_version__recipe"):
            self.stderr.write(
                f"  {task.get_state_display().lower()} {task.source.display_name} "
                f"[{task.recipe_version.recipe.slug}] at {task.error_step or '?'}: {task.error_message}"
            )
        if export:
            archive = campaign_zip(campaign)
            with export.open("wb") as handle:
                for chunk in archive:
                    handle.write(chunk)
            self.stdout.write(f"Wrote {export} ({export.stat().st_size:,} bytes).")
        if report.refused or progress.failed:
            sys.exit(1)

    def wait_for(self, tasks, workers: int | None) -> None:
        """Draw a progress bar until every task is terminal, running burst workers when none are alive."""
        queue = get_process_queue()
        if workers is None:
            workers = 0 if Worker.count(queue=queue) else (os.cpu_count() or 1)
            if workers:
                self.stdout.write(f"No worker is running; starting {workers} for this run.")
        burst: list[subprocess.Popen] = []
        while True:
            progress = Progress.for_tasks(tasks)
            self.draw(progress)
            if progress.remaining == 0:
                break
            burst = [p for p in burst if p.poll() is None]
            # Burst workers leave when the queue is empty; a retry scheduled for later needs them back.
            due = tasks.filter(state=Task.State.QUEUED, next_attempt_at__lte=timezone.now()).exists()
            if len(burst) < workers and (not burst or due or queue.count):
                burst += [self.start_worker() for _ in range(workers - len(burst))]
            time.sleep(0.5)
        self.stderr.write("\n")
        for process in burst:
            process.wait()

    def start_worker(self) -> subprocess.Popen:
        # Per-attempt log lines would tear the progress bar apart; failures are summarised at the end.
        env = {**os.environ, "PIXELMILL_LOG_LEVEL": settings.PIXELMILL_WORKER_LOG_LEVEL}
        return subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "rqworker", "default", "--burst",
             "--with-scheduler", "--verbosity", "0"],
            env=env,
        )  # fmt: skip

    def draw(self, progress: Progress) -> None:
        width = 30
        filled = width * progress.done // progress.total if progress.total else width
        eta = f"ETA {progress.eta_seconds:.0f}s" if progress.eta_seconds else ""
        self.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} {progress.percent}% "
            f"· {progress.per_minute / 60:.2f} img/s · {progress.failed} failed {eta}   ",
            ending="",
        )
        self.stderr.flush()

"""Import every image in a folder, process it with recipes, show progress, summarise, optionally export a ZIP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dashboard import services
from dashboard.exports import campaign_zip
from dashboard.intake import ImportReport, import_directory
from dashboard.models import Campaign, Output, Progress, Recipe, Task, Team
from dashboard.redis_server import EmbeddedRedis
from jobs.queueing import get_process_queue, live_workers


def plain(text: str) -> str:
    """No colour: a progress line stays in the terminal's own colour until something fails."""
    return text


class Command(BaseCommand):
    help = __doc__
    json_summary = False

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
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print a JSON summary on stdout for scripts (counts, durations, output files, failures); "
            "everything else goes to stderr.",
        )

    def handle(self, *args, directory: Path, recipe: list[str], **options) -> None:
        self.json_summary = options["json"]
        with self.redis_available():
            self.run(directory, recipe, options)

    def say(self, message: str) -> None:
        """A line for the person at the terminal: stdout, or stderr when stdout carries the JSON summary."""
        if self.json_summary:
            self.stderr.write(message, style_func=plain)
        else:
            self.stdout.write(message)

    @contextmanager
    def redis_available(self) -> Iterator[None]:
        """Use the configured Redis; with none configured and none running, bring an embedded one for the run."""
        try:
            get_process_queue().connection.ping()
        except redis.ConnectionError:
            if "REDIS_URL" in os.environ:
                raise CommandError(f"Redis at {settings.REDIS_URL} does not answer.") from None
            self.say("No Redis running; starting an embedded one for this run.")
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
        self.say(
            f"Imported {len(report.accepted)} image(s) into “{campaign.name}” (#{campaign.pk}); "
            f"{len(report.duplicates)} already there, {len(report.refused)} refused."
        )
        for refusal in report.refused:
            self.stderr.write(f"  refused {refusal.name}: {refusal.reason}")

        processed = services.process_campaign(campaign, recipes)
        tasks = Task.objects.filter(campaign=campaign, recipe_version__recipe__in=recipes)
        if processed.created:
            self.say(f"Enqueued {processed.created} task(s).")
        elif not tasks.unfinished().exists():
            self.say(
                f"Nothing new to process: every image already has these recipe versions "
                f"({tasks.count()} task(s), all finished)."
            )

        wait = options["wait"] or options["export"] is not None
        elapsed = None
        if wait:
            enqueued_at = time.monotonic()
            self.wait_for(tasks, options["workers"])
            elapsed = time.monotonic() - enqueued_at
        progress = Progress.for_tasks(tasks)
        if wait:
            self.summarise(tasks, progress, report, started, elapsed or 0.0)
        export = options["export"]
        if export:
            self.export(campaign, export)
        # Refusals and failures are only known for sure once the run is over.
        exit_code = 1 if wait and (report.refused or progress.failed) else 0
        if self.json_summary:
            summary = run_summary(campaign, recipes, tasks, progress, report, processed.created)
            summary |= {
                "finished": progress.remaining == 0,
                "seconds": {"total": round(time.monotonic() - started, 3), "processing": rounded(elapsed)},
                "tasks_per_second": rounded(progress.total / elapsed if elapsed else None),
                "images_per_second": rounded(
                    len(report.accepted) / (time.monotonic() - started)
                    if elapsed and report.accepted
                    else None
                ),
                "export": {"path": str(export), "bytes": export.stat().st_size} if export else None,
                "exit_code": exit_code,
            }
            self.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False), style_func=plain)
        if exit_code:
            sys.exit(exit_code)

    def summarise(
        self, tasks, progress: Progress, report: ImportReport, started: float, elapsed: float
    ) -> None:
        summary = (
            f"\nSucceeded {progress.succeeded}, failed {progress.count('failed')}, dead {progress.count('dead')} "
            f"of {progress.total} task(s)"
        )
        if elapsed >= 0.1:  # a rate is only worth printing for work this run waited for
            summary += f" in {elapsed:.1f} s: {progress.total / elapsed:.2f} tasks/s"
            if report.accepted:
                summary += f", {len(report.accepted) / (time.monotonic() - started):.2f} images/s overall"
        self.say(summary + ".")
        for task in tasks.failed().select_related("source", "recipe_version__recipe"):
            self.stderr.write(
                f"  {task.get_state_display().lower()} {task.source.display_name} "
                f"[{task.recipe_version.recipe.slug}] at {task.error_step or '?'}: {task.error_message}"
            )

    def export(self, campaign: Campaign, export: Path) -> None:
        archive = campaign_zip(campaign)
        with export.open("wb") as handle:
            for chunk in archive:
                handle.write(chunk)
        self.say(f"Wrote {export} ({export.stat().st_size:,} bytes).")

    def wait_for(self, tasks, workers: int | None) -> None:
        """Draw a progress bar until every task is terminal, running burst workers when none are alive."""
        queue = get_process_queue()
        if workers is None:
            workers = 0 if live_workers(queue) else (os.cpu_count() or 1)
            if workers:
                self.say(f"No worker is running; starting {workers} for this run.")
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
        self.stderr.write("\n", style_func=plain)
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
        """One progress line, in the terminal's own colour; only a count of failed or dead tasks above
        zero is red. The words are the summary's: failed (will retry or can be requeued) and dead."""
        width = 30
        filled = width * progress.done // progress.total if progress.total else width
        eta = f" · ETA {progress.eta_seconds:.0f}s" if progress.eta_seconds else ""
        counts = " · ".join(
            self.style.ERROR(f"{count} {state}") if count else f"{count} {state}"
            for state, count in (("failed", progress.count("failed")), ("dead", progress.count("dead")))
        )
        self.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} {progress.percent}% "
            f"· {progress.per_minute / 60:.2f} tasks/s · {counts}{eta}   ",
            ending="",
            style_func=plain,
        )
        self.stderr.flush()


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_summary(
    campaign: Campaign, recipes: list[Recipe], tasks, progress: Progress, report: ImportReport, enqueued: int
) -> dict:
    """What the run did, for scripts (--json): counts that match the printed summary, every output file
    and every failure, each with the ids the dashboard and admin use."""  # fmt: skip
    outputs = Output.objects.filter(task__in=tasks).select_related(
        "task__source", "task__recipe_version__recipe"
    )
    failures = tasks.failed().select_related("source", "recipe_version__recipe")
    return {
        "campaign": {"id": campaign.pk, "name": campaign.name},
        "recipes": [recipe.slug for recipe in recipes],
        "images": {
            "imported": len(report.accepted),
            "already_there": len(report.duplicates),
            "refused": [{"name": refusal.name, "reason": refusal.reason} for refusal in report.refused],
        },
        "tasks": {
            "total": progress.total,
            "enqueued_now": enqueued,
            "succeeded": progress.succeeded,
            "failed": progress.count("failed"),
            "dead": progress.count("dead"),
            "unfinished": progress.remaining,
        },
        "outputs": [
            {
                "id": output.pk,
                "task": output.task_id,
                "image": output.task.source.display_name,
                "recipe": output.task.recipe_version.recipe.slug,
                "version": output.task.recipe_version.number,
                "name": output.name,
                "file": output.file.name,
                "path": local_path(output.file.name),
                "width": output.width,
                "height": output.height,
                "format": output.format,
                "bytes": output.byte_size,
            }
            for output in outputs.order_by("task_id", "pk")
        ],
        "failures": [
            {
                "task": task.pk,
                "image": task.source.display_name,
                "recipe": task.recipe_version.recipe.slug,
                "state": task.state,
                "step": task.error_step or None,
                "code": task.error_code or None,
                "message": task.error_message,
            }
            for task in failures.order_by("pk")
        ],
    }


def local_path(name: str) -> str | None:
    """Where a stored file is on this machine; None on storage without local files (S3)."""
    try:
        return default_storage.path(name)
    except NotImplementedError:
        return None

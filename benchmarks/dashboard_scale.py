"""The dashboard at scale: a campaign of 100,000 tasks among a year of others, served by a real gunicorn.

Seeds a measured campaign of --big-campaign tasks, --versions recipe versions per image (by default
50,000 images × 2 = 100,000 tasks: mostly succeeded, some failed, dead, queued and running, finished
over the last ten minutes), and --outputs stored output files; then, up to --tasks in all, finished
campaigns of --campaign-size tasks each (a year of them), and measures through HTTP, one sync gunicorn
worker. The gallery shows every task of each image on its page, so --versions sets how heavy a page is
(24 images × 10 versions = 240 task cards):

- p50/p95 of the campaign list, the campaign page, the progress fragment and its JSON, and the
  first and last page of failures (--requests each);
- the campaign ZIP of --outputs files: time, bytes, and the web worker's peak resident size while it
  streams (VmHWM, reset just before through /proc/<pid>/clear_refs) against its size before;
- a --zip-files zip upload (small product photos), streamed from disk by the client: time and the
  web worker's peak resident size (the archive is larger than its growth, so it was not held), then
  the time a worker takes to unpack it (0 skips it);
- enqueueing --enqueue tasks (Process on a campaign of that many images), in this process:
  the rows and the Redis jobs.

    python -m benchmarks.dashboard_scale [--big-campaign 100000] [--versions 2] [--tasks 100000]
                                         [--campaign-size 5000] [--outputs 10000] [--enqueue 10000]
                                         [--zip-files 1000] [--requests 60]

A year on PostgreSQL (1,000,000 tasks, one campaign of 100,000 and 180 finished ones of 5,000):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pixelmill_bench \\
        python -m benchmarks.dashboard_scale --tasks 1000000 --enqueue 100000 --zip-files 0

Everything runs in a throwaway directory with its own embedded Redis and, unless DATABASE_URL is set,
its own SQLite database. A DATABASE_URL database is emptied first (every table truncated): give the
benchmark one of its own.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.web_server import Gunicorn, set_up_django

ROOT = Path(__file__).resolve().parent.parent
# What enqueueing may take, by size: the figure the issue set for each.
ENQUEUE_TARGETS = {10_000: 3.0, 100_000: 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-campaign", type=int, default=100_000, help="Tasks in the measured campaign.")
    parser.add_argument("--versions", type=int, default=2, help="Recipe versions, so tasks per image.")
    parser.add_argument(
        "--sources",
        type=int,
        default=None,
        help="Images in the measured campaign (default: tasks / versions).",
    )
    parser.add_argument(
        "--tasks", type=int, default=None, help="Tasks in all (default: the measured campaign's)."
    )
    parser.add_argument("--campaign-size", type=int, default=5_000, help="Tasks in each other campaign.")
    parser.add_argument("--outputs", type=int, default=10_000)
    parser.add_argument("--enqueue", type=int, default=10_000)
    parser.add_argument("--zip-files", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    sources = args.sources or max(1, args.big_campaign // args.versions)

    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-dashboard-"))
    sys.path.insert(0, str(ROOT))
    from dashboard.redis_server import EmbeddedRedis

    with EmbeddedRedis() as redis_server:
        set_up_django(workdir, redis_server.url, os.environ.get("DATABASE_URL"))
        from django.db import connection

        started = time.perf_counter()
        empty_database()
        user, campaign, recipe = seed(sources, args.versions, args.outputs, workdir / "media")
        others = seed_history(
            user, args.versions, (args.tasks or 0) - sources * args.versions, args.campaign_size
        )
        settle_database()
        print(
            f"Seeded {campaign.tasks.count():,} tasks over {sources:,} images and {args.outputs:,} stored outputs, "
            f"and {others:,} finished campaigns besides ({count_tasks():,} tasks in all) in "
            f"{time.perf_counter() - started:.0f} s; {os.cpu_count()} cores, {connection.display_name} "
            f"{database_version()}"
        )
        with Gunicorn(["--timeout", "600", "--log-level", "warning"], client_timeout=600) as server:
            client = server.client(user)
            measure_pages(client, server, campaign.pk, args.requests)
            if args.outputs:
                measure_zip(client, server, campaign.pk, args.outputs)
            if args.zip_files:
                measure_upload(client, server, user, args.zip_files, workdir)
        measure_enqueue(user, recipe, args.enqueue)
        print(f"Load average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    shutil.rmtree(workdir, ignore_errors=True)


def empty_database() -> None:
    """A DATABASE_URL database may hold an earlier run: every table truncated, the fixtures migrate made
    (content types, permissions) made again."""
    from django.core.management import call_command

    from dashboard.models import Campaign

    if Campaign.objects.exists():
        call_command("flush", interactive=False, verbosity=0)


def settle_database() -> None:
    """What a database that has served a year is like: PostgreSQL's statistics gathered and its visibility
    map set (autovacuum's work), so the planner and index-only scans see what they would in production."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def database_version() -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        return f"{connection.pg_version // 10000}.{connection.pg_version % 10000}"
    return ".".join(map(str, connection.Database.sqlite_version_info))


def count_tasks() -> int:
    from dashboard.models import Task

    return Task.objects.count()


class RowWriter:
    """Inserts rows of a model fast: the columns `varying` are given per row (database-ready values), every
    other column gets its field's default, prepared once. COPY on PostgreSQL, executemany elsewhere;
    bulk_create spends more time preparing a million rows than the database spends storing them."""

    def __init__(self, model: Any, varying: Sequence[str], fixed: dict[str, Any] | None = None) -> None:
        from django.db import connection

        self.model = model
        fixed = fixed or {}
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        by_name = {field.name: field for field in fields}
        self.varying = [by_name[name] for name in varying]
        self.fixed = [field for field in fields if field.name not in varying]
        self.fixed_values = tuple(
            field.get_db_prep_save(
                fixed[field.name] if field.name in fixed else field.get_default(), connection
            )
            for field in self.fixed
        )
        self.columns = [field.column for field in self.varying + self.fixed]

    def prepare(self, name: str, value: Any) -> Any:
        from django.db import connection

        return self.model._meta.get_field(name).get_db_prep_save(value, connection)

    def insert(self, rows: Iterable[tuple[Any, ...]]) -> None:
        from django.db import connection

        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        columns = ", ".join(quote(column) for column in self.columns)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row + self.fixed_values)
                return
            sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(self.columns))})"
            batch: list[tuple[Any, ...]] = []
            for row in rows:
                batch.append(row + self.fixed_values)
                if len(batch) == 20_000:
                    cursor.executemany(sql, batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)


def insert_sources(campaign: Any, count: int, prefix: str) -> list[int]:
    """`count` images in `campaign`; their primary keys, in order."""
    from django.utils import timezone

    from dashboard.models import SourceImage

    writer = RowWriter(
        SourceImage,
        ["sha256", "display_name", "file"],
        {"campaign": campaign.pk, "width": 4000, "height": 3000, "format": "JPEG", "byte_size": 3_000_000,
         "created_at": timezone.now()},
    )  # fmt: skip
    writer.insert(
        (f"{prefix}{n:0{64 - len(prefix)}x}", f"photo-{n:05d}.jpg", f"sources/{prefix}{campaign.pk}/{n}.jpg")
        for n in range(count)
    )
    return list(SourceImage.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))


def insert_tasks(
    campaign: Any, source_ids: list[int], versions: list[Any], states: list[str], finished_within: timedelta
) -> None:
    """A task per image × version, its state drawn from `states`, finished (when it is) within
    `finished_within` of now."""
    from django.utils import timezone

    from dashboard.models import Task

    now = timezone.now()
    writer = RowWriter(
        Task,
        ["source", "recipe_version", "state", "finished_at", "error_code", "duration_ms", "error_message",
         "error_step"],
        {"campaign": campaign.pk, "attempts": 1, "max_attempts": 5, "queued_at": now - finished_within
         - timedelta(minutes=1), "started_at": now - finished_within, "created_at": now - finished_within},
    )  # fmt: skip
    rng = random.Random(campaign.pk)
    # A thousand distinct finishing times, each prepared once: a million datetimes prepared one by one take
    # longer than storing them.
    finished = [writer.prepare("finished_at", now - finished_within * (n / 1000)) for n in range(1000)]
    codes = ["unreadable", "too_large", "provider_error", "timeout"]
    failure = ("The file is truncated or corrupt.", "decode")

    def rows() -> Iterable[tuple[Any, ...]]:
        for source_id in source_ids:
            for version in versions:
                state = rng.choice(states)
                failed = state in ("failed", "dead")
                done = state not in ("queued", "running")
                yield (
                    source_id, version.pk, state, finished[rng.randrange(1000)] if done else None,
                    rng.choice(codes) if failed else "",
                    rng.uniform(300, 1500) if state == "succeeded" else None,
                    failure[0] if failed else "", failure[1] if failed else "",
                )  # fmt: skip

    writer.insert(rows())


def seed(sources: int, versions_per_image: int, outputs: int, media: Path) -> tuple[Any, Any, Any]:
    from django.contrib.auth.models import User

    from dashboard.models import Campaign, Output, Recipe, Task, Team

    team = Team.objects.create(name="Marketing")
    user = User.objects.create_user("bench", password="bench-password-1")
    team.members.add(user)
    campaign = Campaign.objects.create(name="Launch", team=team, created_by=user)
    recipe = Recipe.objects.create(name="Bench pack", slug="bench-pack")
    recipe.outputs.create(position=0, name="square", width=800, height=800, fit="pad", format="jpeg")
    versions = [recipe.publish_version() for _ in range(versions_per_image)]
    campaign.recipes.add(recipe)
    source_ids = insert_sources(campaign, sources, "")
    states = ["succeeded"] * 95 + ["failed"] * 2 + ["dead"] + ["queued"] + ["running"]
    insert_tasks(campaign, source_ids, versions, states, timedelta(minutes=10))
    done = Task.objects.filter(campaign=campaign, state="succeeded").values_list("pk", flat=True)[:outputs]
    payload = os.urandom(8192)
    output_rows = []
    for task_id in done:
        key = f"outputs/c{campaign.pk}/t{task_id}/square.jpg"
        path = media / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload[: 4096 + task_id % 4096])
        output_rows.append(
            Output(task_id=task_id, name="square", file=key, width=800, height=800, format="jpeg",
                   byte_size=4096 + task_id % 4096)
        )  # fmt: skip
    Output.objects.bulk_create(output_rows, batch_size=5000)
    return user, campaign, recipe


def seed_history(user: Any, versions_per_image: int, tasks: int, campaign_size: int) -> int:
    """Finished campaigns of `campaign_size` tasks, up to `tasks` in all, created over the past year (the
    newest a day before the measured one); how many."""
    from django.utils import timezone

    from dashboard.models import Campaign, Recipe

    if tasks <= 0:
        return 0
    recipe = Recipe.objects.create(name="Last year's pack", slug="last-years-pack")
    versions = [recipe.publish_version() for _ in range(versions_per_image)]
    count = max(1, tasks // campaign_size)
    states = ["succeeded"] * 96 + ["failed"] * 2 + ["dead"] * 2
    now = timezone.now()
    for n in range(count):
        campaign = Campaign.objects.create(name=f"Week {n}", team=user.teams.first(), created_by=user)
        campaign.recipes.add(recipe)
        age = timedelta(days=1 + 364 * (count - n) / count)
        Campaign.objects.filter(pk=campaign.pk).update(created_at=now - age, run_number=1)
        source_ids = insert_sources(campaign, max(1, campaign_size // versions_per_image), "h")
        insert_tasks(campaign, source_ids, versions, states, age)
    return count


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_pages(client, server: Gunicorn, campaign_id: int, requests: int) -> None:
    first = client.get(f"/campaigns/{campaign_id}/failures/").text
    last = re.search(r"Page \d+ of (\d+)", first)
    last_page = int(last.group(1)) if last else 1
    pages = {
        "campaign list": "/",
        "campaign page": f"/campaigns/{campaign_id}/",
        "progress fragment": f"/campaigns/{campaign_id}/progress/?live=1",
        "progress JSON": f"/campaigns/{campaign_id}/progress/?format=json",
        "failures, page 1": f"/campaigns/{campaign_id}/failures/",
        f"failures, page {last_page:,}": f"/campaigns/{campaign_id}/failures/?page={last_page}",
    }
    print(
        f"\nPages ({requests} requests each, p50 / p95 / max, target p95 < 150 ms; the web worker's CPU time "
        "per request, which neighbours' load hardly moves, and the load average after each page):"
    )
    for label, path in pages.items():
        client.get(path)  # warm
        times = []
        cpu_before = server.cpu_seconds()
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
        cpu = (server.cpu_seconds() - cpu_before) * 1000 / requests
        p95 = percentile(times, 0.95)
        print(
            f"  {label:22} {statistics.median(times):6.1f} / {p95:6.1f} / {max(times):6.1f} ms  "
            f"{len(response.content) / 1024:6.0f} KiB  cpu {cpu:5.1f} ms  load {os.getloadavg()[0]:4.1f}  "
            f"{'met' if p95 < 150 else 'MISSED'}"
        )
    body = client.get(f"/campaigns/{campaign_id}/failures/?page={last_page}").text
    pager = re.search(r"Page (\d+) of (\d+)", body)
    rows = body.count(">Requeue</a>")
    print(
        f"  failures page is paginated: {bool(pager)} (last page {pager.group(1) if pager else '?'} of "
        f"{pager.group(2) if pager else '?'}, {rows} rows on it)"
    )


def measure_zip(client, server: Gunicorn, campaign_id: int, outputs: int) -> None:
    before = server.reset_peak()
    started = time.perf_counter()
    size = 0
    with client.stream("GET", f"/campaigns/{campaign_id}/download.zip") as response:
        declared = int(response.headers["Content-Length"])
        for chunk in response.iter_raw():
            size += len(chunk)
    elapsed = time.perf_counter() - started
    peak = server.peak_kb()
    print(
        f"\nZIP of {outputs:,} outputs: {size / 1e6:.0f} MB (Content-Length {'matches' if size == declared else 'DIFFERS'}) "
        f"in {elapsed:.1f} s; web worker {before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB while streaming "
        f"(+{(peak - before) / 1024:.0f} MB); target peak < 150 MB: {'met' if peak / 1024 < 150 else 'MISSED'}"
    )


def measure_upload(client, server: Gunicorn, user, files: int, workdir: Path) -> None:
    from dashboard.models import Campaign
    from jobs.samples import product_jpeg

    campaign = Campaign.objects.create(name="Upload", team=user.teams.first(), created_by=user)
    archive = workdir / "upload.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        for n in range(files):
            out.writestr(f"batch/photo-{n:04d}.jpg", product_jpeg(640, 480, n))
    page = client.get(f"/campaigns/{campaign.pk}/")
    token = page.cookies.get("csrftoken") or client.cookies.get("csrftoken")
    before = server.reset_peak()
    started = time.perf_counter()
    with archive.open("rb") as handle:
        response = client.post(
            f"/campaigns/{campaign.pk}/upload/",
            files={"files": ("batch.zip", handle, "application/zip")},
            headers={"X-CSRFToken": token, "Accept": "application/json"},
        )
    elapsed = time.perf_counter() - started
    peak = server.peak_kb()
    if response.status_code != 200:
        raise RuntimeError(f"the upload answered {response.status_code}")
    size = archive.stat().st_size
    print(
        f"\nUpload of a {files:,}-file zip ({size / 1e6:.0f} MB): stored for a worker in {elapsed:.1f} s; "
        f"web worker {before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB "
        f"(+{(peak - before) / 1024:.0f} MB, the archive is {size / 1e6:.0f} MB): "
        f"{'not held in memory' if (peak - before) * 1024 < size / 2 else 'HELD in memory'}"
    )
    # The archive is unpacked by a worker (jobs/deferred_uploads.py): here, one in this process.
    import django_rq
    from rq import SimpleWorker

    started = time.perf_counter()
    queue = django_rq.get_queue("default")
    SimpleWorker([queue], connection=queue.connection).work(burst=True, logging_level="WARNING")
    elapsed = time.perf_counter() - started
    added = campaign.sources.count()
    print(f"  then unpacked by a worker: {added:,} added in {elapsed:.1f} s ({added / elapsed:.0f} files/s)")


def measure_enqueue(user: Any, recipe: Any, count: int) -> None:
    import django_rq

    from dashboard.models import Campaign
    from dashboard.services import process_campaign

    campaign = Campaign.objects.create(name="Enqueue", team=user.teams.first(), created_by=user)
    insert_sources(campaign, count, "e")
    queue = django_rq.get_queue("default")
    queue.empty()
    started = time.perf_counter()
    report = process_campaign(campaign, [recipe])
    elapsed = time.perf_counter() - started
    target = ENQUEUE_TARGETS.get(count)
    verdict = f"target < {target:.0f} s: {'met' if elapsed < target else 'MISSED'}" if target else "no target"
    print(
        f"\nEnqueue {report.created:,} tasks (rows + Redis jobs, {queue.count:,} now queued): {elapsed:.2f} s; "
        f"{verdict}"
    )
    queue.empty()


if __name__ == "__main__":
    main()

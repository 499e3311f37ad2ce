"""The dashboard at scale: one campaign of 100,000 tasks, served by a real gunicorn.

Bulk-creates a campaign of --sources images × --versions recipe versions (by default 50,000 × 2 =
100,000 tasks: mostly succeeded, some failed, dead, queued and running, finished over the last ten
minutes) and --outputs stored output files, then measures through HTTP, one sync gunicorn worker.
The gallery shows every task of each image on its page, so --versions sets how heavy a page is
(24 images × 10 versions = 240 task cards):

- p50/p95 of the campaign list, the campaign page, the progress fragment and its JSON, and the
  first and last page of failures (--requests each);
- the campaign ZIP of --outputs files: time, bytes, and the web worker's peak resident size while it
  streams (VmHWM, reset just before through /proc/<pid>/clear_refs) against its size before;
- a --zip-files zip upload (small product photos), streamed from disk by the client: time and the
  web worker's peak resident size (the archive is larger than its growth, so it was not held), then
  the time a worker takes to unpack it;
- enqueueing --enqueue tasks (Process on a campaign of that many images), in this process:
  the rows and the Redis jobs.

    python -m benchmarks.dashboard_scale [--sources 50000] [--versions 2] [--outputs 10000] [--enqueue 10000]
                                         [--zip-files 1000] [--requests 60]

Everything runs in a throwaway directory with its own embedded Redis and SQLite database.
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
from datetime import timedelta
from pathlib import Path

from benchmarks.web_server import Gunicorn, set_up_django

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=50_000, help="Images in the campaign.")
    parser.add_argument("--versions", type=int, default=2, help="Recipe versions, so tasks per image.")
    parser.add_argument("--outputs", type=int, default=10_000)
    parser.add_argument("--enqueue", type=int, default=10_000)
    parser.add_argument("--zip-files", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-dashboard-"))
    sys.path.insert(0, str(ROOT))
    from dashboard.redis_server import EmbeddedRedis

    with EmbeddedRedis() as redis_server:
        set_up_django(workdir, redis_server.url)
        started = time.perf_counter()
        user, campaign, recipe = seed(args.sources, args.versions, args.outputs, workdir / "media")
        print(
            f"Seeded {campaign.tasks.count():,} tasks over {args.sources:,} images and {args.outputs:,} "
            f"stored outputs in {time.perf_counter() - started:.0f} s; {os.cpu_count()} cores, SQLite"
        )
        with Gunicorn(["--timeout", "600", "--log-level", "warning"], client_timeout=600) as server:
            client = server.client(user)
            measure_pages(client, campaign.pk, args.requests)
            measure_zip(client, server, campaign.pk, args.outputs)
            measure_upload(client, server, user, args.zip_files, workdir)
        measure_enqueue(user, recipe, args.enqueue)
    shutil.rmtree(workdir, ignore_errors=True)


def seed(sources: int, versions_per_image: int, outputs: int, media: Path):
    from django.contrib.auth.models import User
    from django.utils import timezone

    from dashboard.models import Campaign, Output, Recipe, SourceImage, Task, Team

    team = Team.objects.create(name="Marketing")
    user = User.objects.create_user("bench", password="bench-password-1")
    team.members.add(user)
    campaign = Campaign.objects.create(name="Launch", team=team, created_by=user)
    recipe = Recipe.objects.create(name="Bench pack", slug="bench-pack")
    recipe.outputs.create(position=0, name="square", width=800, height=800, fit="pad", format="jpeg")
    versions = [recipe.publish_version() for _ in range(versions_per_image)]
    campaign.recipes.add(recipe)
    SourceImage.objects.bulk_create(
        [
            SourceImage(
                campaign=campaign, sha256=f"{n:064x}", display_name=f"photo-{n:05d}.jpg",
                file=f"sources/bench/{n}.jpg", width=4000, height=3000, format="JPEG", byte_size=3_000_000,
            )
            for n in range(sources)
        ],
        batch_size=2000,
    )  # fmt: skip
    now = timezone.now()
    rng = random.Random(5)
    states = ["succeeded"] * 95 + ["failed"] * 2 + ["dead"] + ["queued"] + ["running"]
    codes = ["unreadable", "too_large", "provider_error", "timeout"]
    rows = []
    for source_id in SourceImage.objects.filter(campaign=campaign).values_list("pk", flat=True):
        for version in versions:
            state = rng.choice(states)
            failed = state in ("failed", "dead")
            finished = (
                now - timedelta(seconds=rng.uniform(0, 600)) if state not in ("queued", "running") else None
            )
            rows.append(
                Task(
                    campaign=campaign, source_id=source_id, recipe_version=version, state=state, attempts=1,
                    max_attempts=5, queued_at=now - timedelta(minutes=11), started_at=now - timedelta(minutes=10),
                    finished_at=finished, error_code=rng.choice(codes) if failed else "",
                    duration_ms=rng.uniform(300, 1500) if state == "succeeded" else None,
                    error_message="The file is truncated or corrupt." if failed else "", error_step="decode" if failed else "",
                )
            )  # fmt: skip
    Task.objects.bulk_create(rows, batch_size=5000)
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_pages(client, campaign_id: int, requests: int) -> None:
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
    print(f"\nPages ({requests} requests each, p50 / p95 / max, target p95 < 150 ms):")
    for label, path in pages.items():
        client.get(path)  # warm
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
        p95 = percentile(times, 0.95)
        print(
            f"  {label:22} {statistics.median(times):6.1f} / {p95:6.1f} / {max(times):6.1f} ms  "
            f"{len(response.content) / 1024:6.0f} KiB  {'met' if p95 < 150 else 'MISSED'}"
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


def measure_enqueue(user, recipe, count: int) -> None:
    import django_rq

    from dashboard.models import Campaign, SourceImage
    from dashboard.services import process_campaign

    campaign = Campaign.objects.create(name="Enqueue", team=user.teams.first(), created_by=user)
    SourceImage.objects.bulk_create(
        [
            SourceImage(campaign=campaign, sha256=f"e{n:063x}", display_name=f"{n}.jpg", file=f"e/{n}.jpg",
                        width=10, height=10, format="JPEG", byte_size=1)
            for n in range(count)
        ],
        batch_size=2000,
    )  # fmt: skip
    queue = django_rq.get_queue("default")
    queue.empty()
    started = time.perf_counter()
    report = process_campaign(campaign, [recipe])
    elapsed = time.perf_counter() - started
    print(
        f"\nEnqueue {report.created:,} tasks (rows + Redis jobs, {queue.count:,} now queued): {elapsed:.2f} s; "
        f"target < 3 s: {'met' if elapsed < 3 else 'MISSED'}"
    )
    queue.empty()


if __name__ == "__main__":
    main()

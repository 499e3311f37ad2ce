"""Two hosts that share no disk: a real web server and two worker processes, each with its own empty
PIXELMILL_DATA_DIR, finish a 50-image campaign through one S3-compatible bucket (moto's server on loopback),
and not one file lands in any of their local folders."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import django_rq
import httpx
import pytest
from django.conf import settings
from django.test import Client
from rq import Worker

from dashboard.models import Output, Recipe, Task
from dashboard.redis_server import free_port
from tests.conftest import stop_process, worker_environment
from tests.jobs.images import jpeg, photo
from tests.object_store import Bucket
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = 50
THREADS = 2


def host_environment(data_dir: Path, bucket: Bucket, **extra: str) -> dict[str, str]:
    """One machine's environment: the shared database, Redis and bucket, and a data folder of its own. The
    secret key is the test's, so the session this test signs in with is valid on the web host."""
    data_dir.mkdir()
    return {
        **worker_environment(),
        **bucket.environment,
        "PIXELMILL_DATA_DIR": str(data_dir),
        "PIXELMILL_MEDIA_ROOT": str(data_dir / "media"),  # where local storage would write: must stay absent
        "PIXELMILL_SECRET_KEY": settings.SECRET_KEY,
        "PIXELMILL_LOG_LEVEL": "WARNING",
        **extra,
    }


def local_files(data_dir: Path) -> list[str]:
    return sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*") if path.is_file())


@pytest.fixture
def hosts(tmp_path, s3_bucket, redis_conn):
    """The web host (gunicorn with the production configuration) and two worker hosts, on loopback."""
    port = free_port()
    data_dirs = {name: tmp_path / name for name in ("web", "worker-1", "worker-2")}
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--config", "python:dashboard.gunicorn_config",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env=host_environment(data_dirs["web"], s3_bucket, PIXELMILL_STORAGE_REDIRECT_DOWNLOADS="true"),
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rqworker",
                "control",
                "default",
                "--with-scheduler",
                "--name",
                name,
            ],
            cwd=ROOT,
            env=host_environment(data_dirs[name], s3_bucket, PIXELMILL_WORKER_THREADS=str(THREADS)),
        )  # fmt: skip
        for name in ("worker-1", "worker-2")
    ]
    processes = [web, *workers]
    try:

        def up() -> bool:
            assert all(process.poll() is None for process in processes), "a host exited at start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
            return len(Worker.all(connection=django_rq.get_connection("default"))) >= 2 * THREADS

        wait_until(up, timeout=90, interval=0.2, message="the web host and both worker hosts never came up")
        yield f"http://127.0.0.1:{port}", data_dirs
    finally:
        for process in processes:
            stop_process(process)


def kind_of(key: str) -> str:
    if key.endswith(".thumb.webp"):
        return "source thumbnails"
    if key.endswith("_preview.webp"):
        return "previews"
    return key.split("/")[0]


def light_recipe() -> Recipe:
    recipe = Recipe.objects.create(name="Light pack", slug="light-pack")
    recipe.outputs.create(
        position=1, name="thumb", width=96, height=96, fit="fill", format="jpeg", quality=80
    )
    recipe.outputs.create(position=2, name="square", width=64, height=64, fit="pad", format="png")
    recipe.publish_version()
    return recipe


def test_a_campaign_of_50_images_runs_on_hosts_that_share_only_the_bucket(
    hosts, s3_bucket, campaign, marketer
):
    base_url, data_dirs = hosts
    recipe = light_recipe()
    session = Client()
    session.force_login(marketer)
    web = httpx.Client(
        base_url=base_url, cookies={"sessionid": session.cookies["sessionid"].value}, timeout=60
    )
    web.get(f"/campaigns/{campaign.pk}/")  # the page hands out the CSRF cookie its forms use
    csrf = {"X-CSRFToken": web.cookies["csrftoken"], "Referer": base_url}
    files = [
        ("files", (f"look-{n:02d}.jpg", jpeg(photo(160, 120, seed=n), quality=85))) for n in range(IMAGES)
    ]

    started = time.monotonic()
    uploaded = web.post(
        f"/campaigns/{campaign.pk}/upload/", files=files, headers={**csrf, "Accept": "application/json"}
    )
    assert uploaded.status_code == 200, uploaded.text
    assert len(uploaded.json()["accepted"]) == IMAGES
    pressed = web.post(f"/campaigns/{campaign.pk}/process/", data={"recipes": [recipe.pk]}, headers=csrf)
    assert pressed.status_code == 302, pressed.text
    tasks = Task.objects.filter(campaign=campaign)
    wait_until(
        lambda: tasks.count() == IMAGES and not tasks.exclude(state__in=Task.TERMINAL_STATES).exists(),
        timeout=120,
        interval=0.2,
        message=lambda: f"tasks by state: {list(tasks.values_list('state', flat=True))}",
    )
    elapsed = time.monotonic() - started

    assert set(tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    hosts_used = {name.partition(".")[0] for name in tasks.values_list("worker_name", flat=True)}
    assert hosts_used == {"worker-1", "worker-2"}, f"both worker hosts took tasks: {hosts_used}"

    objects = s3_bucket.objects()
    outputs = Output.objects.filter(task__campaign=campaign)
    assert outputs.count() == IMAGES * 2
    for output in outputs:
        assert objects.get(output.file.name) == output.byte_size, output.file.name
    for task in tasks.select_related("source"):
        assert {task.source.file.name, task.source.thumbnail.name, task.preview.name} <= objects.keys()

    # The web host streams the campaign ZIP out of the bucket, and redirects a download to a presigned link.
    archive = web.get(f"/campaigns/{campaign.pk}/download.zip")
    assert archive.status_code == 200
    zipped = zipfile.ZipFile(io.BytesIO(archive.content))
    assert len(zipped.namelist()) == IMAGES * 2 + 1
    some = outputs.order_by("pk").first()
    assert some is not None
    download = web.get(f"/outputs/{some.pk}/")
    assert download.status_code == 302
    assert httpx.get(download.headers["location"]).content == s3_bucket.read(some.file.name)

    for name, data_dir in data_dirs.items():
        assert local_files(data_dir) == [], f"{name} wrote to its own disk"
        assert not (data_dir / "media").exists()

    sizes: dict[str, list[int]] = {}
    for key, size in objects.items():
        sizes.setdefault(kind_of(key), []).append(size)
    print(
        f"\n\ntwo hosts, no shared disk: {IMAGES} images x {recipe.outputs.count()} outputs in {elapsed:.1f} s"
    )
    print(
        f"  tasks by worker host: "
        f"{ {host: tasks.filter(worker_name__startswith=host).count() for host in sorted(hosts_used)} }"
    )
    print(
        f"  bucket {s3_bucket.name}: {len(objects)} objects, {sum(objects.values()):,} bytes "
        f"({', '.join(f'{kind}: {len(s)}, {sum(s):,} bytes' for kind, s in sorted(sizes.items()))})"
    )
    print(f"  outputs: {outputs.count()}, {sum(outputs.values_list('byte_size', flat=True)):,} bytes")
    print(f"  files in the hosts' data folders: { {name: local_files(d) for name, d in data_dirs.items()} }")
    print("  bucket listing (bytes  key):")
    for key in sorted(objects):
        print(f"    {objects[key]:>8,}  {key}")

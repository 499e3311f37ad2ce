"""Test setup: a real Redis (embedded unless REDIS_URL is set), a throwaway media folder, a real S3-compatible
server for the tests that ask for a bucket, shared fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from dashboard.redis_server import EmbeddedRedis
from tests.object_store import Bucket, MotoServer

EMBEDDED: dict[str, object] = {}


def pytest_configure(config) -> None:
    from django.conf import settings

    if "REDIS_URL" not in os.environ:
        server = EmbeddedRedis()
        os.environ["REDIS_URL"] = server.start()
        EMBEDDED["redis"] = server
    url = os.environ["REDIS_URL"]
    settings.REDIS_URL = url
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url

    media = Path(tempfile.mkdtemp(prefix="pixelmill-test-media-"))
    EMBEDDED["media"] = media
    # Prometheus figures of this run (this process and the workers it starts) in a folder of their own,
    # never summed with those of `make run` in var/prometheus.
    metrics = Path(tempfile.mkdtemp(prefix="pixelmill-test-metrics-"))
    EMBEDDED["metrics"] = metrics
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    settings.PROMETHEUS_MULTIPROC_DIR = metrics
    os.environ["PIXELMILL_MEDIA_ROOT"] = str(media)
    settings.MEDIA_ROOT = media
    settings.STORAGES["default"]["OPTIONS"]["location"] = media
    # Persistent connections from the live server's threads would keep the test database busy at teardown.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Login throttling stays out of the way of the suite's many logins; tests/dashboard/test_login_throttling.py
    # switches it on. (Without a request, as the test client's login() calls it, its backend would refuse.)
    settings.AXES_ENABLED = False
    # Retries in tests should not wait seconds.
    settings.PIXELMILL_RETRY_BASE_SECONDS = 0.05
    settings.PIXELMILL_RETRY_MAX_SECONDS = 0.2


def pytest_unconfigure(config) -> None:
    server = EMBEDDED.get("redis")
    if server is not None:
        server.stop()
    for folder in ("media", "metrics"):
        if EMBEDDED.get(folder) is not None:
            shutil.rmtree(EMBEDDED[folder], ignore_errors=True)


def pytest_generate_tests(metafunc) -> None:
    """`real_photo` runs a test once per photo of the real-photo corpus (python -m corpus.build); a test
    marked `photos_with_profile` only on the colour photos whose ICC profile is not sRGB."""
    if "real_photo" not in metafunc.fixturenames:
        return
    from corpus.build import default_cache_dir, load_manifest

    cache = default_cache_dir()
    manifest = load_manifest(cache)
    if manifest is None:
        metafunc.parametrize("real_photo", [None], ids=["no-corpus"], indirect=True)
        return
    photos = [{**entry, "path": cache / entry["file"]} for entry in manifest["photos"]]
    if metafunc.definition.get_closest_marker("photos_with_profile"):
        photos = [photo for photo in photos if carries_colour_profile(photo["path"])]
    metafunc.parametrize("real_photo", photos, ids=[photo["id"] for photo in photos], indirect=True)


def carries_colour_profile(path: Path) -> bool:
    """Whether the photo at `path` is RGB(A) with an embedded ICC profile other than sRGB, read from its
    header only."""
    import io

    from PIL import Image, ImageCms

    from jobs.imaging import register_heif

    register_heif()
    try:
        with Image.open(path) as image:
            icc = image.info.get("icc_profile")
            if image.mode not in ("RGB", "RGBA") or not icc:
                return False
            description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
            return "srgb" not in description.lower()
    except (OSError, ValueError, ImageCms.PyCMSError, Image.DecompressionBombError):
        return False


@pytest.fixture
def real_photo(request):
    """One photo of the real-photo corpus: its manifest entry, with `path`. Without a corpus the test
    fails under CI (which builds it) and is skipped, loudly, elsewhere."""
    photo = request.param
    if photo is None:
        message = "the real-photo corpus is missing: build it with `make corpus` (python -m corpus.build)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip("NO REAL PHOTOS: " + message)
    return photo


RECIPE_OUTCOMES = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def recipe_outcomes(request) -> dict:
    """{recipe slug: {photo id: (outcome, reason key, message, seconds)}}, filled by the real-photo recipe
    tests (tests/jobs/test_ready_recipes_on_photos.py) and summed up at the end of the session."""
    return request.config.stash.setdefault(RECIPE_OUTCOMES, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    outcomes = config.stash.get(RECIPE_OUTCOMES, None)
    if not outcomes:
        return
    terminalreporter.section("ready recipes on real photos")
    for slug, photos in outcomes.items():
        kinds = Counter(kind for kind, *_ in photos.values())
        seconds = sum(taken for *_, taken in photos.values())
        counts = ", ".join(
            f"{kinds[kind]} {kind}"
            for kind in ("succeeded", "partly made", "kept whole", "refused", "crashed")
        )
        terminalreporter.write_line(f"{slug}: {counts} of {len(photos)} photos ({seconds:.1f} s)")
        groups: dict[tuple[str, str], list[str]] = {}
        for photo, (kind, key, _, _) in sorted(photos.items()):
            if kind != "succeeded":
                groups.setdefault((kind, key), []).append(photo)
        for (kind, key), who in sorted(groups.items(), key=lambda item: -len(item[1])):
            example = photos[who[0]][2]
            terminalreporter.write_line(f"    {kind} ×{len(who)} ({key}): {example[:140]}")
            terminalreporter.write_line(f"        {', '.join(who)}")


@pytest.fixture(autouse=True)
def empty_django_cache():
    """Each test's database starts again from the same primary keys, so figures one test cached under a
    campaign's key (CampaignQuerySet.counted) would be another's."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def redis_conn():
    """The test Redis, emptied before each test that uses queues."""
    import django_rq

    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a loopback port, started once, the first time a test asks for a bucket."""
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, settings):
    """A fresh private bucket, and this process's media storage pointed at it (PIXELMILL_STORAGE=s3)."""
    bucket = Bucket.create(s3_server)
    settings.PIXELMILL_STORAGE = "s3"
    settings.STORAGES = bucket.storages()
    return bucket


@pytest.fixture
def team(db):
    from dashboard.models import Team

    return Team.objects.create(name="Marketing")


@pytest.fixture
def marketer(db, team, django_user_model):
    user = django_user_model.objects.create_user("maria", password="pw-maria-123")
    team.members.add(user)
    return user


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


@pytest.fixture
def ready_recipes(db):
    from dashboard.ready_recipes import install_ready_recipes

    install_ready_recipes()
    from dashboard.models import Recipe

    return {recipe.slug: recipe for recipe in Recipe.objects.all()}


@pytest.fixture
def campaign(db, team, marketer):
    from dashboard.models import Campaign

    return Campaign.objects.create(name="Spring sale", team=team, created_by=marketer)


def run_burst_worker() -> None:
    """Drain the queues in this process (SimpleWorker): real Redis, real RQ, same database connection."""
    import django_rq
    from rq import SimpleWorker

    connection = django_rq.get_connection("default")
    queues = [django_rq.get_queue("control"), django_rq.get_queue("default")]
    SimpleWorker(queues, connection=connection).work(burst=True, with_scheduler=True, logging_level="WARNING")


def worker_environment() -> dict[str, str]:
    """Environment for worker subprocesses: the same Redis, media folder and (test) database."""
    from django.db import connection

    env = os.environ.copy()
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["PIXELMILL_RETRY_BASE_SECONDS"] = "0.05"
    env["PIXELMILL_RETRY_MAX_SECONDS"] = "0.2"
    return env


def start_worker_process(
    *queues: str,
    burst: bool = True,
    worker_class: str | None = None,
    name: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    argv = [sys.executable, "manage.py", "rqworker", *(queues or ("control", "default")), "--with-scheduler"]
    if burst:
        argv.append("--burst")
    if worker_class:
        argv += ["--worker-class", worker_class]
    if name:
        argv += ["--name", name]
    return subprocess.Popen(
        argv, env={**worker_environment(), **(env or {})}, cwd=Path(__file__).resolve().parent.parent
    )


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; nothing if it already exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_web_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    """`manage.py up` as `make run` starts it but with no RQ worker (web server and scheduler), on `port`,
    quiet: its access log would be hundreds of probes."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "up", "--no-setup", "--workers", "0", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**worker_environment(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (from /proc): RQ's work-horses, which sit in sessions of their own."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children

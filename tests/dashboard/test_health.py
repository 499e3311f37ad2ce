"""/healthz answers while the process lives, whatever its dependencies do; /readyz answers 200 only when the
database, Redis and media storage all work, and names the one that does not."""

from __future__ import annotations

import socket

from django.conf import settings as django_settings
from django.db import connections

from dashboard.redis_server import EmbeddedRedis


def checks(response) -> dict[str, str]:
    return dict(line.split(": ") for line in response.content.decode().splitlines())


def test_readyz_checks_everything_without_an_account_and_leaves_no_file_behind(client, db, redis_conn):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert checks(response) == {"database": "ok", "redis": "ok", "storage": "ok"}
    assert response["Content-Type"].startswith("text/plain") and response["Cache-Control"] == "no-store"
    leftovers = django_settings.MEDIA_ROOT / "readyz"
    assert not leftovers.exists() or not any(leftovers.iterdir())


def test_readyz_names_redis_when_nothing_listens_on_its_port(client, db, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.RQ_QUEUES = {
        name: {**queue, "URL": f"redis://127.0.0.1:{closed}/0"} for name, queue in settings.RQ_QUEUES.items()
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "redis": "failed", "storage": "ok"}


def test_readyz_names_storage_when_the_media_folder_cannot_be_written(
    client, db, redis_conn, settings, tmp_path
):
    # A file where the media folder should be: nothing can be written under it, even by root.
    blocked = tmp_path / "media"
    blocked.write_bytes(b"not a folder")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": blocked}},
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "redis": "ok", "storage": "failed"}


def test_readyz_names_the_database_when_it_cannot_be_opened(
    client, redis_conn, monkeypatch, tmp_path, django_db_blocker
):
    database = connections["default"]
    missing = str(tmp_path / "gone" / "db.sqlite3") if database.vendor == "sqlite" else "pixelmill_no_such_db"
    with django_db_blocker.unblock():
        database.close()
        monkeypatch.setitem(database.settings_dict, "NAME", missing)
        try:
            response = client.get("/readyz")
        finally:
            database.close()  # the next test connects again, to the real database
    assert response.status_code == 503
    assert checks(response) == {"database": "failed", "redis": "ok", "storage": "ok"}


def point_queues_at(settings, url: str) -> None:
    settings.RQ_QUEUES = {name: {**queue, "URL": url} for name, queue in settings.RQ_QUEUES.items()}


def test_readyz_answers_503_naming_redis_once_a_running_redis_is_stopped(client, db, settings):
    server = EmbeddedRedis()
    point_queues_at(settings, server.start())
    try:
        before = client.get("/readyz")
    finally:
        server.stop()
    after = client.get("/readyz")
    assert before.status_code == 200 and checks(before)["redis"] == "ok"
    assert after.status_code == 503
    assert checks(after) == {"database": "ok", "redis": "failed", "storage": "ok"}


def test_healthz_is_liveness_only_and_answers_with_redis_and_the_database_gone(
    client, settings, monkeypatch, tmp_path, django_db_blocker
):
    server = EmbeddedRedis()
    point_queues_at(settings, server.start())
    server.stop()
    database = connections["default"]
    with django_db_blocker.unblock():
        database.close()
        monkeypatch.setitem(database.settings_dict, "NAME", str(tmp_path / "gone" / "db.sqlite3"))
        try:
            response = client.get("/healthz")
        finally:
            database.close()
    assert response.status_code == 200
    assert response.content == b"ok\n" and response["Cache-Control"] == "no-store"

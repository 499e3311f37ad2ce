"""/healthz answers 200 only when the database, Redis and media storage all work, and names the one that does not."""

from __future__ import annotations

import socket

from django.conf import settings as django_settings
from django.db import connections


def checks(response) -> dict[str, str]:
    return dict(line.split(": ") for line in response.content.decode().splitlines())


def test_healthz_checks_everything_without_an_account_and_leaves_no_file_behind(client, db, redis_conn):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert checks(response) == {"database": "ok", "redis": "ok", "storage": "ok"}
    assert response["Content-Type"].startswith("text/plain") and response["Cache-Control"] == "no-store"
    leftovers = django_settings.MEDIA_ROOT / "healthz"
    assert not leftovers.exists() or not any(leftovers.iterdir())


def test_healthz_names_redis_when_nothing_listens_on_its_port(client, db, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.RQ_QUEUES = {
        name: {**queue, "URL": f"redis://127.0.0.1:{closed}/0"} for name, queue in settings.RQ_QUEUES.items()
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "redis": "failed", "storage": "ok"}


def test_healthz_names_storage_when_the_media_folder_cannot_be_written(
    client, db, redis_conn, settings, tmp_path
):
    # A file where the media folder should be: nothing can be written under it, even by root.
    blocked = tmp_path / "media"
    blocked.write_bytes(b"not a folder")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": blocked}},
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    assert checks(response) == {"database": "ok", "redis": "ok", "storage": "failed"}


def test_healthz_names_the_database_when_it_cannot_be_opened(
    client, redis_conn, monkeypatch, tmp_path, django_db_blocker
):
    database = connections["default"]
    missing = str(tmp_path / "gone" / "db.sqlite3") if database.vendor == "sqlite" else "pixelmill_no_such_db"
    with django_db_blocker.unblock():
        database.close()
        monkeypatch.setitem(database.settings_dict, "NAME", missing)
        try:
            response = client.get("/healthz")
        finally:
            database.close()  # the next test connects again, to the real database
    assert response.status_code == 503
    assert checks(response) == {"database": "failed", "redis": "ok", "storage": "ok"}

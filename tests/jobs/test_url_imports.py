"""Imports by URL run in workers: transient failures retry, permanent ones fail with the reason, and the
reconciler takes back what a lost worker or queue left behind."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from rq.job import Job

from dashboard.models import UrlImport
from dashboard.services import queue_url_imports, requeue_url_imports
from jobs.queueing import URL_IMPORTS
from jobs.reconciler import reconcile_task
from jobs.url_imports import import_url_task
from tests.jobs.images import jpeg, photo
from tests.polling import drain_until

IMAGE = jpeg(photo(64, 48, seed=8))

pytestmark = pytest.mark.django_db(transaction=True)


class FlakyServer(BaseHTTPRequestHandler):
    """Answers each path's scripted statuses in turn, then 200 with the image."""

    script: dict[str, list[int]] = {}
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        statuses = self.script.get(self.path, [])
        status = statuses.pop(0) if statuses else 200
        body = IMAGE if status == 200 else b"busy"
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(settings):
    settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FlakyServer)
    FlakyServer.script, FlakyServer.hits = {}, {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def drain(campaign) -> None:
    """Run burst workers until every import of the campaign has ended (retries are scheduled a moment out)."""
    drain_until(
        lambda: not campaign.url_imports.exclude(state__in=UrlImport.TERMINAL_STATES).exists(),
        message=lambda: str(list(campaign.url_imports.values("state", "attempts", "error_message"))),
    )


def test_a_server_answering_503_then_200_is_retried_and_the_image_arrives(campaign, server, redis_conn):
    FlakyServer.script = {"/busy.jpg": [503, 503]}
    queue_url_imports(campaign, [f"{server}/busy.jpg"])
    drain(campaign)
    row = campaign.url_imports.get()
    assert (row.state, row.attempts, row.duplicate) == ("succeeded", 3, False)
    assert FlakyServer.hits["/busy.jpg"] == 3
    assert campaign.sources.get().display_name == "busy.jpg"


def test_a_server_that_stays_down_ends_dead_with_the_reason_and_can_be_tried_again(
    campaign, server, redis_conn, settings
):
    settings.PIXELMILL_MAX_ATTEMPTS = 2
    FlakyServer.script = {"/down.jpg": [503, 503, 503]}
    queue_url_imports(campaign, [f"{server}/down.jpg"])
    drain(campaign)
    row = campaign.url_imports.get()
    assert (row.state, row.attempts) == ("dead", 2) and "HTTP 503" in row.error_message

    assert requeue_url_imports(campaign.url_imports.all()) == 1
    drain(campaign)
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("succeeded", 4)


@pytest.mark.parametrize(
    "url", ["http://[::127.0.0.1]/a.jpg", "http://[64:ff9b::7f00:1]/a.jpg", "http://[::a9fe:a9fe]/latest/"]
)
def test_an_ipv4_inside_ipv6_private_address_fails_at_once_without_retries(campaign, redis_conn, url):
    queue_url_imports(campaign, [url])
    drain(campaign)
    row = campaign.url_imports.get()
    assert (row.state, row.attempts, row.error_code) == ("failed", 1, "url_forbidden"), row.error_message
    assert "The address points at" in row.error_message


def test_the_same_bytes_under_two_urls_become_one_source(campaign, server, redis_conn):
    queue_url_imports(campaign, [f"{server}/a.jpg", f"{server}/b.jpg"])
    drain(campaign)
    rows = list(campaign.url_imports.order_by("pk"))
    assert [row.duplicate for row in rows] == [False, True]
    assert campaign.sources.count() == 1 and rows[1].source_id == rows[0].source_id


def test_a_duplicate_delivery_does_nothing(campaign, server, redis_conn):
    queue_url_imports(campaign, [f"{server}/once.jpg"])
    row = campaign.url_imports.get()
    assert import_url_task(row.pk, 1) == "succeeded"
    assert import_url_task(row.pk, 1) == "skipped"
    assert FlakyServer.hits["/once.jpg"] == 1


def test_the_reconciler_resends_an_import_whose_job_redis_lost(campaign, server, redis_conn):
    queue_url_imports(campaign, [f"{server}/lost.jpg"])
    UrlImport.objects.update(queued_at=timezone.now() - timedelta(minutes=5))
    redis_conn.flushdb()
    assert reconcile_task()["url_imports_queue_lost"] == 1
    row = campaign.url_imports.get()
    assert (row.attempts, row.error_code) == (1, "queue_lost")
    assert Job.exists(URL_IMPORTS.job_id(row.pk, 2), connection=redis_conn)
    drain(campaign)
    assert campaign.url_imports.get().state == "succeeded"


def test_the_reconciler_takes_back_an_import_whose_worker_died(campaign, server, redis_conn):
    queue_url_imports(campaign, [f"{server}/orphan.jpg"])
    row = campaign.url_imports.get()
    UrlImport.objects.filter(pk=row.pk).update(
        state="running", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile_task()["url_imports_worker_lost"] == 1
    drain(campaign)
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("succeeded", 2)


def test_a_bug_while_importing_fails_at_once_with_a_plain_message_and_a_ref(
    campaign, redis_conn, monkeypatch
):
    from jobs import url_imports

    def broken(url):
        raise RuntimeError("'NoneType' object has no attribute 'headers'")

    monkeypatch.setattr(url_imports, "fetch_image", broken)
    queue_url_imports(campaign, ["https://images.example.com/chair.jpg"])
    row = campaign.url_imports.get()
    assert import_url_task(row.pk, 1) == "failed"
    row.refresh_from_db()
    assert (row.state, row.attempts, row.error_code) == ("failed", 1, "internal_error")
    assert row.error_message.startswith(
        "Something went wrong on our side while importing this URL (error ref "
    )
    assert row.error_message.endswith("staff have the details.")  # one full stop, not two
    assert "RuntimeError" not in row.error_message and "NoneType" not in row.error_message

"""Campaign webhooks: the signature, one delivery per finished run, signed POSTs to a real receiver through
a real worker, retries with backoff, refused private addresses, and the repair of lost jobs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from django_rq import get_queue
from rq.job import Job

from dashboard.models import Generation, Provider, SourceImage, Task, WebhookDelivery
from dashboard.services import process_campaign
from jobs.queueing import CONTROL_QUEUE
from jobs.webhooks import (
    campaign_run_finished,
    deliver_webhook_task,
    delivery_job_id,
    retry_due_webhooks_task,
    sign,
    verify,
)
from tests.conftest import run_burst_worker
from tests.factories import add_source, make_remote_recipe, make_source
from tests.jobs.images import jpeg, photo
from tests.listeners import CountingListener
from tests.polling import drain_until

pytestmark = pytest.mark.usefixtures("redis_conn")


def add_broken_source(campaign, name: str) -> SourceImage:
    """A source whose stored bytes are not an image: its task fails permanently, with a reason."""
    key = default_storage.save(f"sources/c{campaign.pk}/broken.jpg", ContentFile(b"\xff\xd8 not a jpeg"))
    return SourceImage.objects.create(
        campaign=campaign, sha256="0" * 64, display_name=name, file=key, width=1, height=1, format="JPEG",
        byte_size=12,
    )  # fmt: skip


SECRET = "whsec_test"


# --- signing ---------------------------------------------------------------------------------------------------


def test_a_signature_verifies_only_the_exact_body_with_the_same_secret_while_fresh():
    body = b'{"id":"evt_1","type":"campaign.run.finished"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=") and len(header.rpartition("v1=")[2]) == 64
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header), "a tampered body must not verify"
    assert not verify(SECRET, body.replace(b"evt_1", b"evt_2"), header)
    assert not verify("whsec_other", body, header), "another secret must not verify"
    assert not verify(SECRET, body, header, now=now + 301), "a stale timestamp must be refused"
    assert not verify(SECRET, body, header, now=now - 301), "a timestamp from the future too"
    assert verify(SECRET, body, header, now=now + 299)


def test_malformed_signature_headers_are_refused_not_raised():
    body = b"{}"
    good = sign(SECRET, body, int(time.time()))
    for header in ["", "v1=abc", good.split(",")[0], "t=soon," + good.split(",")[1], "garbage"]:
        assert not verify(SECRET, body, header), header
    # Stripe-style: a header may carry several v1 values, and one matching is enough.
    t, v1 = good.split(",")
    assert verify(SECRET, body, f"{t},v1={'0' * 64},{v1}")


def test_a_campaign_gets_one_signing_secret_created_on_first_need(campaign):
    secret = campaign.ensure_webhook_secret()
    assert secret.startswith("whsec_") and len(secret) == 6 + 48
    campaign.refresh_from_db()
    assert campaign.webhook_secret == secret and campaign.ensure_webhook_secret() == secret


# --- when a delivery is created ---------------------------------------------------------------------------------


@pytest.fixture
def finished_run(campaign):
    """A campaign whose first run ended with one image rendered and one failed, and a webhook URL."""
    recipe = make_remote_recipe("Square", [])
    version = recipe.current_version()
    good = add_source(campaign, jpeg(photo(64, 48, seed=1)), name="shoe.jpg")
    bad = add_source(campaign, jpeg(photo(64, 48, seed=2)), name="bag.jpg")
    done = Task.objects.create(campaign=campaign, source=good, recipe_version=version, state="succeeded")
    done.outputs.create(name="square", file="x.png", width=1, height=1, format="png", byte_size=1)
    Task.objects.create(
        campaign=campaign,
        source=bad,
        recipe_version=version,
        state="failed",
        error_code="unreadable",
        error_message="The file is truncated or corrupt.",
    )
    campaign.webhook_url = "https://hooks.example.com/pixelmill"
    campaign.run_number = 1
    campaign.save()
    return campaign


def test_the_payload_summarises_the_run_with_absolute_links_when_a_base_url_is_set(
    finished_run, settings, django_capture_on_commit_callbacks
):
    settings.PIXELMILL_BASE_URL = "https://pixelmill.example.com/"
    with django_capture_on_commit_callbacks():
        delivery = campaign_run_finished(finished_run.pk)
    payload = delivery.payload
    assert payload["id"].startswith("evt_") and payload["type"] == "campaign.run.finished"
    assert abs(payload["created"] - time.time()) < 60
    data = payload["data"]
    assert data["campaign"] == {
        "id": finished_run.pk,
        "name": "Spring sale",
        "url": f"https://pixelmill.example.com/campaigns/{finished_run.pk}/",
    }
    assert data["run"] == 1
    assert data["tasks"] == {"total": 2, "succeeded": 1, "failed": 1, "dead": 0}
    assert data["outputs"] == 1
    assert data["download_url"] == f"https://pixelmill.example.com/campaigns/{finished_run.pk}/download.zip"
    assert data["failures"] == [
        {"image": "bag.jpg", "recipe": "Square", "reason": "The file is truncated or corrupt."}
    ]
    assert (delivery.url, delivery.state, delivery.attempts) == (finished_run.webhook_url, "pending", 0)


def test_without_a_base_url_the_links_are_paths(finished_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        data = campaign_run_finished(finished_run.pk).payload["data"]
    assert data["campaign"]["url"] == f"/campaigns/{finished_run.pk}/"
    assert data["download_url"] == f"/campaigns/{finished_run.pk}/download.zip"


def test_two_calls_for_the_same_run_create_one_delivery_and_enqueue_it_once(
    finished_run, django_capture_on_commit_callbacks
):
    """Every worker that finishes a piece may call it; the unique row makes one delivery, sent once."""
    control = get_queue(CONTROL_QUEUE)
    with django_capture_on_commit_callbacks(execute=True):
        first = campaign_run_finished(finished_run.pk)
        second = campaign_run_finished(finished_run.pk)
    assert first.pk == second.pk and first.payload["id"] == second.payload["id"]
    assert WebhookDelivery.objects.count() == 1
    assert control.job_ids == [delivery_job_id(first.pk, 1)]
    # A new run (Process or Requeue again) is a new event.
    finished_run.run_number = 2
    finished_run.save()
    with django_capture_on_commit_callbacks(execute=True):
        third = campaign_run_finished(finished_run.pk)
    assert third.pk != first.pk and third.run_number == 2
    assert control.job_ids == [delivery_job_id(first.pk, 1), delivery_job_id(third.pk, 1)]


def test_work_added_while_a_run_goes_on_joins_it_and_one_webhook_reports_it_all(campaign, ready_recipes):
    campaign.webhook_url = "https://hooks.example.com/pixelmill"
    campaign.save()
    for n in range(2):
        make_source(campaign, sha=f"{n:064x}")

    def finish(task: Task) -> WebhookDelivery | None:
        assert Task.claim(task.pk, 1) and task.mark_succeeded(1)
        return campaign_run_finished(campaign.pk)

    process_campaign(campaign, [ready_recipes["sale-banner"]])
    first, second = campaign.tasks.order_by("pk")
    assert finish(first) is None
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])  # while the run goes on: it joins
    added = list(campaign.tasks.exclude(pk__in=[first.pk, second.pk]))
    assert [finish(task) for task in [second, *added[:-1]]] == [None] * 2
    delivery = finish(added[-1])
    assert (delivery.run_number, delivery.payload["data"]["tasks"]["total"]) == (1, 4)
    assert WebhookDelivery.objects.count() == 1

    make_source(campaign, sha="f" * 64)
    process_campaign(campaign, [ready_recipes["sale-banner"]])  # the campaign was idle: the next run
    campaign.refresh_from_db()
    assert campaign.run_number == 2 and campaign.progress().total == 1


def test_nothing_is_sent_while_work_remains_or_without_a_url(
    finished_run, django_capture_on_commit_callbacks
):
    task = finished_run.tasks.first()
    Task.objects.filter(pk=task.pk).update(state="running")
    assert campaign_run_finished(finished_run.pk) is None, "a running task: the run is not over"
    Task.objects.filter(pk=task.pk).update(state="succeeded")

    provider = Provider.objects.create(name="fal", slug="fal", kind="fal", base_url="https://queue.fal.run")
    generation = Generation.objects.create(campaign=finished_run, provider=provider, prompt="red shoes")
    assert campaign_run_finished(finished_run.pk) is None, "an unfinished generation: the run is not over"
    Generation.objects.filter(pk=generation.pk).update(state="cancelled")

    finished_run.webhook_url = ""
    finished_run.save()
    assert campaign_run_finished(finished_run.pk) is None, "no webhook URL: nothing to send"
    assert campaign_run_finished(999_999) is None, "a deleted campaign: nothing to send"
    assert not WebhookDelivery.objects.exists()


# --- delivery through a real worker to a real receiver ----------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        server = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.caught.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        status = server.answers.pop(0) if server.answers else 200  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver(settings):
    """A webhook receiver on loopback, which an operator has explicitly trusted for this test; `answers`
    lists the statuses it gives, in order (then 200)."""
    settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.caught, server.answers = [], []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_port}/hooks/pixelmill"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_retries(settings):
    settings.PIXELMILL_WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.PIXELMILL_WEBHOOK_RETRY_MAX_SECONDS = 0.1


def settled(delivery: WebhookDelivery) -> Callable[[], bool]:
    """Whether the delivery has left pending (sent, or given up on)."""
    return lambda: WebhookDelivery.objects.get(pk=delivery.pk).state != "pending"


@pytest.mark.django_db(transaction=True)
def test_a_finished_run_reaches_a_real_receiver_signed_through_a_real_worker(campaign, receiver):
    campaign.webhook_url = receiver.url
    campaign.save()
    add_source(campaign, jpeg(photo(64, 48, seed=1)), name="shoe.jpg")
    add_broken_source(campaign, "broken.jpg")
    process_campaign(
        campaign, [make_remote_recipe("Square", [], [{"name": "sq", "width": 32, "height": 32}])]
    )
    run_burst_worker()  # renders the images
    assert not campaign.tasks.unfinished().exists()
    # The worker calls this as each task ends; calling it again for the same run changes nothing.
    delivery = campaign_run_finished(campaign.pk)
    drain_until(settled(delivery), 15, "the delivery never left pending")

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and len(delivery.log) == 1 and delivery.log[0]["status"] == 200
    [(path, headers, body)] = receiver.caught
    assert path == "/hooks/pixelmill"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Pixelmill-Webhooks/1.0"
    assert headers["Pixelmill-Event"] == "campaign.run.finished"
    assert headers["Pixelmill-Delivery"] == delivery.payload["id"]
    campaign.refresh_from_db()
    assert verify(campaign.webhook_secret, body, headers["Pixelmill-Signature"])
    event = json.loads(body)
    assert event == delivery.payload
    assert event["data"]["tasks"] == {"total": 2, "succeeded": 1, "failed": 1, "dead": 0}
    assert [f["image"] for f in event["data"]["failures"]] == ["broken.jpg"]

    # A duplicate job for a delivered delivery is a no-op.
    assert deliver_webhook_task(delivery.pk) == "skipped"
    assert len(receiver.caught) == 1


@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_500_twice_gets_it_on_the_third_try(finished_run, receiver, fast_retries):
    finished_run.webhook_url = receiver.url
    finished_run.save()
    receiver.answers.extend([500, 500])
    delivery = campaign_run_finished(finished_run.pk)
    drain_until(settled(delivery), 15, "the delivery never left pending")

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert [(e["attempt"], e["status"]) for e in delivery.log] == [(1, 500), (2, 500), (3, 200)]
    assert [e["error"] for e in delivery.log] == ["The receiver answered HTTP 500."] * 2 + [""]
    assert all(e["duration_ms"] >= 0 and e["time"] for e in delivery.log)
    # Every try carries the same body and delivery id, each with its own fresh signature.
    bodies = {body for _, _, body in receiver.caught}
    ids = {headers["Pixelmill-Delivery"] for _, headers, _ in receiver.caught}
    assert len(receiver.caught) == 3 and len(bodies) == 1 and len(ids) == 1
    finished_run.refresh_from_db()
    for _, headers, body in receiver.caught:
        assert verify(finished_run.webhook_secret, body, headers["Pixelmill-Signature"])


@pytest.mark.django_db(transaction=True)
def test_a_private_receiver_is_refused_without_a_connection_and_fails_after_the_last_try(
    finished_run, settings, fast_retries
):
    """Without the allow-list, loopback is refused before connecting; each refusal is a try with a reason."""
    settings.PIXELMILL_WEBHOOK_MAX_ATTEMPTS = 3
    listener = CountingListener()
    try:
        finished_run.webhook_url = f"http://127.0.0.1:{listener.port}/hook"
        finished_run.save()
        delivery = campaign_run_finished(finished_run.pk)
        drain_until(settled(delivery), 15, "the delivery never left pending")
    finally:
        listener.close()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("failed", 3, None)
    assert delivery.last_error == "The address points at this server (loopback)."
    assert [(e["status"], e["error"]) for e in delivery.log] == [(None, delivery.last_error)] * 3
    assert delivery.next_attempt_at is None
    assert listener.accepted == 0


@pytest.mark.django_db(transaction=True)
def test_a_receiver_behind_nat64_loopback_is_refused_without_a_connection(finished_run, fast_retries):
    """64:ff9b::7f00:1 is 127.0.0.1 through a NAT64 gateway: refused before connecting, with the reason."""
    finished_run.webhook_url = "http://[64:ff9b::7f00:1]/hook"
    finished_run.save()
    delivery = campaign_run_finished(finished_run.pk)
    drain_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).attempts >= 1, 15, "no try was made")
    delivery.refresh_from_db()
    assert delivery.last_error == "The address points at this server (loopback)."
    assert delivery.last_status_code is None


def test_a_refused_try_schedules_the_next_one_with_backoff(finished_run, django_capture_on_commit_callbacks):
    """The first failed try is recorded and the next is due 5–10 s later (base 10 s, full jitter)."""
    finished_run.webhook_url = "http://10.0.0.7/hook"
    finished_run.save()
    with django_capture_on_commit_callbacks():
        delivery = campaign_run_finished(finished_run.pk)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_webhook_task(delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.attempts == 1
    assert "private" in delivery.last_error
    assert timedelta(seconds=4.9) <= delivery.next_attempt_at - before <= timedelta(seconds=10.5)
    job = Job.fetch(delivery_job_id(delivery.pk, 2), connection=get_connection())
    assert job.get_status() == "scheduled"
    # A job arriving before the retry is due (a duplicate) does nothing.
    assert deliver_webhook_task(delivery.pk) == "skipped"
    delivery.refresh_from_db()
    assert delivery.attempts == 1


def test_a_removed_webhook_stops_its_pending_delivery(finished_run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        delivery = campaign_run_finished(finished_run.pk)
    finished_run.webhook_url = ""
    finished_run.save()
    assert deliver_webhook_task(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.state == "failed" and "no longer has a webhook URL" in delivery.last_error


# --- repair ------------------------------------------------------------------------------------------------------


def get_connection():
    import django_rq

    return django_rq.get_connection("control")


def test_retry_due_webhooks_sends_again_what_redis_lost_and_only_that(
    finished_run, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        delivery = campaign_run_finished(finished_run.pk)  # its enqueue never happened (lost)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    fresh = WebhookDelivery.objects.create(
        campaign=finished_run,
        run_number=7,
        url="https://x.example/",
        payload={},
        next_attempt_at=timezone.now(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert retry_due_webhooks_task() == 1, "only the delivery overdue by more than a minute"
    assert Job.fetch(delivery_job_id(delivery.pk, 1), connection=redis_conn).get_status() == "queued"
    assert not Job.exists(delivery_job_id(fresh.pk, 1), connection=redis_conn)
    assert retry_due_webhooks_task() == 0, "its job is waiting now: not sent twice"

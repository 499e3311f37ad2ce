"""Worker entry points on a real Redis: success, duplicate delivery, permanent and transient failures, repair."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.job import Job

from dashboard.models import SourceImage, Task
from dashboard.services import process_campaign
from jobs import tasks as task_module
from jobs.errors import PermanentError, TransientError
from jobs.queueing import enqueue_attempts, get_process_queue, job_id_for, schedule_attempt
from jobs.reconciler import reconcile_task
from jobs.samples import product_jpeg
from jobs.tasks import process_task
from tests.conftest import child_pids, run_burst_worker, worker_environment
from tests.jobs.images import jpeg, photo, product_on_white
from tests.polling import drain_until, wait_until

pytestmark = pytest.mark.usefixtures("redis_conn")


def add_source(campaign, data: bytes, name: str = "item.jpg") -> SourceImage:
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    key = default_storage.save(f"sources/c{campaign.pk}/{sha}.jpg", ContentFile(data))
    return SourceImage.objects.create(
        campaign=campaign,
        sha256=sha,
        display_name=name,
        file=key,
        width=1,
        height=1,
        format="JPEG",
        byte_size=len(data),
    )


@pytest.fixture
def queued_task(campaign, ready_recipes, django_capture_on_commit_callbacks):
    add_source(campaign, jpeg(product_on_white(1200, 900)))
    with django_capture_on_commit_callbacks(execute=True):
        process_campaign(campaign, [ready_recipes["ecommerce-pack"]])
    return campaign.tasks.get()


def test_a_worker_renders_every_output_under_deterministic_keys(
    queued_task, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run_burst_worker()
    queued_task.refresh_from_db()
    assert queued_task.state == "succeeded" and queued_task.attempts == 1
    outputs = {o.name: o for o in queued_task.outputs.all()}
    assert set(outputs) == {"thumbnail", "thumbnail-webp", "product", "product-webp", "zoom", "zoom-webp"}
    assert outputs["zoom"].file.name == f"outputs/c{queued_task.campaign_id}/t{queued_task.pk}/zoom.jpg"
    assert (outputs["zoom"].width, outputs["zoom"].height) == (2000, 2000)
    assert default_storage.size(outputs["thumbnail"].file.name) == outputs["thumbnail"].byte_size
    assert {"decode", "remove_background", "render", "store", "total"} <= set(queued_task.timings)


def test_a_duplicate_delivery_does_nothing(queued_task):
    assert process_task(queued_task.pk, 1) == "succeeded"
    assert process_task(queued_task.pk, 1) == "skipped"
    assert Task.objects.get(pk=queued_task.pk).outputs.count() == 6


def test_transient_errors_retry_with_backoff_then_die(
    queued_task, monkeypatch, django_capture_on_commit_callbacks
):
    def flaky(*args, **kwargs):
        raise TransientError("The provider timed out.", code="timeout")

    monkeypatch.setattr(task_module, "run_pipeline", flaky)
    Task.objects.filter(pk=queued_task.pk).update(max_attempts=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert process_task(queued_task.pk, 1) == "timeout"
    queued_task.refresh_from_db()
    assert queued_task.state == "queued" and queued_task.next_attempt_at > timezone.now() - timedelta(
        seconds=1
    )
    assert queued_task.error_message == "The provider timed out."
    scheduled = get_process_queue().scheduled_job_registry.get_job_ids()
    assert scheduled == [job_id_for(queued_task.pk, 2)]

    with django_capture_on_commit_callbacks(execute=True):
        assert process_task(queued_task.pk, 2) == "timeout"
        assert process_task(queued_task.pk, 3) == "timeout"
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts, queued_task.error_code) == ("dead", 3, "timeout")


@pytest.mark.django_db(transaction=True)
def test_scheduled_retries_run_through_the_worker(queued_task, monkeypatch):
    calls = []
    real = task_module.run_pipeline

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("503 from provider", code="http_503")
        return real(*args, **kwargs)

    monkeypatch.setattr(task_module, "run_pipeline", fails_once)
    # Attempt 1 fails and schedules attempt 2 a moment later.
    drain_until(lambda: Task.objects.get(pk=queued_task.pk).state == "succeeded", timeout=10)
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts, len(calls)) == ("succeeded", 2, 2)


def test_an_unreadable_source_fails_permanently_with_a_reason(campaign, ready_recipes):
    add_source(campaign, b"\xff\xd8\xff\xe0 truncated nonsense", name="bad.jpg")
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])
    task = campaign.tasks.get()
    assert process_task(task.pk, 1) == "unreadable"
    task.refresh_from_db()
    assert task.state == "failed" and task.attempts == 1 and task.error_message


def test_reconciler_requeues_work_redis_lost_counting_the_lost_attempt(
    queued_task, redis_conn, django_capture_on_commit_callbacks
):
    Task.objects.filter(pk=queued_task.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    redis_conn.flushdb()  # Redis restarted empty
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_task()["queue_lost"] == 1
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts, queued_task.error_code) == ("queued", 1, "queue_lost")
    assert "queue lost" in queued_task.error_message
    assert Job.exists(job_id_for(queued_task.pk, 2), connection=redis_conn)
    assert redis_conn.lindex("rq:queue:default", 0).decode() == job_id_for(queued_task.pk, 2), "at the front"
    assert reconcile_task()["queue_lost"] == 0  # present now: not sent twice
    assert process_task(queued_task.pk, 1) == "skipped", "a late copy of the lost job does nothing"
    assert process_task(queued_task.pk, 2) == "succeeded"


def test_a_task_whose_last_attempt_redis_lost_is_dead_with_the_reason(queued_task, redis_conn):
    Task.objects.filter(pk=queued_task.pk).update(
        queued_at=timezone.now() - timedelta(minutes=5), attempts=4, max_attempts=5
    )
    redis_conn.flushdb()
    assert reconcile_task()["dead"] == 1
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts, queued_task.error_code) == ("dead", 5, "queue_lost")
    assert redis_conn.llen("rq:queue:default") == 0


def test_reconciler_takes_back_a_task_whose_worker_died(queued_task, django_capture_on_commit_callbacks):
    Task.claim(queued_task.pk, 1, "dead-worker")
    Task.objects.filter(pk=queued_task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_task()["worker_lost"] == 1
    queued_task.refresh_from_db()
    assert queued_task.state == "queued" and queued_task.error_code == "worker_lost"
    assert process_task(queued_task.pk, 2) == "succeeded"


def test_bulk_enqueue_uses_attempt_job_ids(campaign, ready_recipes, redis_conn):
    for n in range(5):
        add_source(campaign, jpeg(photo(32, 32, seed=n)), name=f"{n}.jpg")
    process_campaign(campaign, [ready_recipes["sale-banner"]])
    pairs = [(pk, 1) for pk in campaign.tasks.values_list("pk", flat=True)]
    assert enqueue_attempts(pairs) == 5
    assert redis_conn.llen("rq:queue:default") == 5


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_renewing_its_lease(queued_task, monkeypatch, settings):
    settings.PIXELMILL_TASK_LEASE_SECONDS = 0.6
    leases = []

    def slow_step(*args, **kwargs):
        leases.append(Task.objects.get(pk=queued_task.pk).lease_expires_at)
        time.sleep(1.0)  # outlast the 0.6 s lease: only the heartbeat can keep it ahead
        leases.append(Task.objects.get(pk=queued_task.pk).lease_expires_at)
        raise PermanentError("stopped by the test", code="test")

    monkeypatch.setattr(task_module, "run_pipeline", slow_step)
    process_task(queued_task.pk, 1)
    assert leases[1] > leases[0] + timedelta(seconds=0.3)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_loses_nothing(campaign, ready_recipes, redis_conn, monkeypatch):
    """SIGKILL a worker (parent and work-horse) mid-task: the lease expires, the reconciler requeues, it succeeds."""
    add_source(campaign, product_jpeg(4000, 3000, seed=5))
    process_campaign(campaign, [ready_recipes["ecommerce-pack"]])
    task = campaign.tasks.get()
    monkeypatch.setenv("PIXELMILL_TASK_LEASE_SECONDS", "1.5")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "default", "--verbosity", "0"],
        env={**worker_environment(), "PIXELMILL_TASK_LEASE_SECONDS": "1.5"},
    )
    try:
        wait_until(
            lambda: Task.objects.get(pk=task.pk).state == "running",
            timeout=30,
            interval=0.02,
            message="the worker never started the task",
        )
        # RQ puts the work-horse in a session of its own: kill it by parentage, then the worker.
        for pid in child_pids(worker.pid) + [worker.pid]:
            os.kill(pid, signal.SIGKILL)
    finally:
        worker.wait(10)
    assert Task.objects.get(pk=task.pk).state == "running"  # left in limbo by the dead worker
    time.sleep(1.6)  # the lease runs out: nobody renews it
    assert reconcile_task()["worker_lost"] == 1
    run_burst_worker()
    task.refresh_from_db()
    assert (task.state, task.attempts) == ("succeeded", 2)
    assert task.outputs.count() == 6


def test_reconciler_requeues_a_task_whose_job_failed_before_the_claim(
    queued_task, redis_conn, django_capture_on_commit_callbacks
):
    """A work-horse killed before claiming leaves the job failed in RQ and the task queued."""
    Task.objects.filter(pk=queued_task.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    job = Job.fetch(job_id_for(queued_task.pk, 1), connection=redis_conn)
    job.set_status("failed")
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_task()["queue_lost"] == 1
    assert Job.fetch(job_id_for(queued_task.pk, 2), connection=redis_conn).get_status() == "queued"


def test_reconciler_requeues_a_job_popped_by_a_worker_killed_before_it_started(
    queued_task, redis_conn, django_capture_on_commit_callbacks
):
    """The job still says queued, but no list holds it: the worker took it off the queue and died."""
    Task.objects.filter(pk=queued_task.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    assert reconcile_task()["queue_lost"] == 0, "a queued job in its queue is left alone"
    assert redis_conn.lpop("rq:queue:default").decode() == job_id_for(queued_task.pk, 1)
    assert Job.fetch(job_id_for(queued_task.pk, 1), connection=redis_conn).get_status() == "queued"
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_task()["queue_lost"] == 1
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [job_id_for(queued_task.pk, 2).encode()]
    assert process_task(queued_task.pk, 2) == "succeeded"


def test_reconciler_requeues_a_started_job_whose_worker_went_silent(queued_task, redis_conn, settings):
    Task.objects.filter(pk=queued_task.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    job = Job.fetch(job_id_for(queued_task.pk, 1), connection=redis_conn)
    job.set_status("started")
    job.heartbeat(timezone.now() - timedelta(seconds=30), ttl=60)
    assert reconcile_task()["queue_lost"] == 0  # a 30-second-old heartbeat is normal
    settings.PIXELMILL_STARTED_JOB_SILENCE_SECONDS = 10
    assert reconcile_task()["queue_lost"] == 1


def test_reconciler_releases_retries_a_dead_scheduler_left_waiting(queued_task, redis_conn, settings):
    """The worker holding RQ's scheduler lock was killed: its overdue retries are released anyway."""
    settings.PIXELMILL_RECONCILE_GRACE_SECONDS = 1
    redis_conn.delete("rq:queue:default")
    due = timezone.now() - timedelta(seconds=30)
    schedule_attempt(queued_task.pk, 1, due)
    schedule_attempt(queued_task.pk, 2, timezone.now() + timedelta(minutes=5))  # not due: left alone
    assert reconcile_task()["scheduled_released"] == 1
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [job_id_for(queued_task.pk, 1).encode()]
    assert get_process_queue().scheduled_job_registry.get_job_ids() == [job_id_for(queued_task.pk, 2)]


@pytest.mark.django_db(transaction=True)
def test_a_database_that_drops_mid_attempt_is_a_retry_with_a_readable_reason(queued_task, monkeypatch):
    from django.db import OperationalError

    def database_restarted(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(task_module, "run_pipeline", database_restarted)
    assert process_task(queued_task.pk, 1) == "database_unavailable"
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.error_code) == ("queued", "database_unavailable")
    assert queued_task.error_message == "The database was briefly unreachable; this will be tried again."


def test_a_worker_stores_the_quality_used_and_the_channel_rules_an_output_breaks(campaign, db):
    from dashboard.models import Recipe
    from jobs.rendering import BUDGET_QUALITY_FLOOR

    recipe = Recipe.objects.create(name="Display ads", slug="display-ads")
    recipe.outputs.create(name="roomy", width=300, height=250, fit="fill", format="jpeg", max_kb=150)
    recipe.outputs.create(name="tight", width=300, height=250, fit="fill", format="jpeg", max_kb=1)
    recipe.outputs.create(name="big", width=1200, height=1200, fit="fit", format="jpeg", min_width=1000)
    recipe.publish_version()
    add_source(campaign, jpeg(photo(800, 600)))
    process_campaign(campaign, [recipe])
    assert process_task(campaign.tasks.get().pk, 1) == "succeeded"
    outputs = {o.name: o for o in campaign.tasks.get().outputs.all()}
    assert (outputs["roomy"].quality, outputs["roomy"].violations) == (85, [])
    assert outputs["tight"].quality == BUDGET_QUALITY_FLOOR
    assert [v["rule"] for v in outputs["tight"].violations] == ["max_bytes"]
    assert outputs["big"].violations == [
        {
            "rule": "min_size",
            "message": "800×600, smaller than the 1000×– minimum (the source image is too small)",
        }
    ]


def test_storing_again_overwrites_the_same_output_rows(queued_task):
    """A retried attempt that gets as far as storing replaces its earlier rows instead of adding any."""
    from jobs.rendering import run_pipeline

    assert process_task(queued_task.pk, 1) == "succeeded"
    before = {o.name: (o.pk, o.byte_size) for o in queued_task.outputs.all()}
    version = queued_task.recipe_version
    source = default_storage.open(queued_task.source.file.name).read()
    result = run_pipeline(source, version.build_steps(), version.build_specs())
    result.outputs[0] = type(result.outputs[0])(result.outputs[0].spec, b"x" * 10, 1, 1)
    task_module.store_result(queued_task, result)
    after = {o.name: (o.pk, o.byte_size) for o in queued_task.outputs.all()}
    assert {name: pk for name, (pk, _) in after.items()} == {name: pk for name, (pk, _) in before.items()}
    assert after[result.outputs[0].spec.name][1] == 10


CROP_BUG = "Source cropping option is invalid: Size of the crop box is out of the image boundaries"


def raise_in_render(monkeypatch, exc: BaseException) -> None:
    """A bug in local rendering: the pipeline's last step raises what no step anticipated."""
    from jobs import rendering

    def broken_render(*args, **kwargs):
        raise exc

    monkeypatch.setattr(rendering, "render_outputs", broken_render)


def test_a_bug_in_local_rendering_fails_at_once_with_a_plain_message_and_a_ref_staff_can_look_up(
    queued_task,
    monkeypatch,
    caplog,
    admin_client,
    marketer_client,
    redis_conn,
    django_capture_on_commit_callbacks,
):
    """No five attempts and no backoff: the marketer reads one sentence with a ref, staff get the traceback."""
    raise_in_render(monkeypatch, RuntimeError(CROP_BUG))
    with django_capture_on_commit_callbacks(execute=True):
        assert process_task(queued_task.pk, 1) == "internal_error"
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts, queued_task.next_attempt_at) == ("failed", 1, None)
    assert get_process_queue().scheduled_job_registry.get_job_ids() == []
    assert not Job.exists(job_id_for(queued_task.pk, 2), connection=redis_conn)

    ref = re.fullmatch(
        r"Something went wrong on our side while processing this image \(step render\) \(error ref ([0-9a-f]{8})\)\. "
        r"It will not be retried automatically; staff have the details\.",
        queued_task.error_message,
    ).group(1)
    for page in ("campaign-failures", "campaign-detail"):
        html = marketer_client.get(reverse(page, args=[queued_task.campaign_id])).content.decode()
        assert ref in html and "RuntimeError" not in html and "crop box" not in html, page

    assert ref in queued_task.error_detail and "Traceback (most recent call last)" in queued_task.error_detail
    admin_page = admin_client.get(
        reverse("admin:dashboard_task_change", args=[queued_task.pk])
    ).content.decode()
    assert f"RuntimeError: {CROP_BUG}" in admin_page and ref in admin_page

    [logged] = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert logged.error_ref == ref and logged.exc_info[0] is RuntimeError


def test_a_task_that_failed_on_a_bug_is_requeued_from_the_failures_page_once_a_fix_is_out(
    queued_task, monkeypatch, marketer_client, django_capture_on_commit_callbacks
):
    raise_in_render(monkeypatch, RuntimeError(CROP_BUG))
    assert process_task(queued_task.pk, 1) == "internal_error"
    failures = marketer_client.get(
        reverse("campaign-failures", args=[queued_task.campaign_id])
    ).content.decode()
    assert "Internal error (reported to staff)" in failures

    monkeypatch.undo()  # the fix is deployed
    url = reverse("campaign-requeue-failed", args=[queued_task.campaign_id]) + "?cause=internal_error"
    with django_capture_on_commit_callbacks(execute=True):
        assert marketer_client.post(url).status_code == 302
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.error_message, queued_task.error_detail) == ("queued", "", "")
    assert process_task(queued_task.pk, 2) == "succeeded"


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("width"),
        ValueError("operands could not be broadcast together"),
        FileNotFoundError(2, "No such file or directory"),  # a missing source stays missing
        OSError("encoder error -2"),  # Pillow's own OSErrors carry no errno
        IntegrityError("UNIQUE constraint failed: dashboard_output.task_id"),  # our query, not the database
        ClientError(
            {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject"
        ),
    ],
    ids=["KeyError", "ValueError", "ENOENT", "pillow-OSError", "IntegrityError", "bucket-denied"],
)
def test_an_unexpected_exception_in_local_work_is_permanent(queued_task, monkeypatch, exc):
    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(task_module, "run_pipeline", broken)
    assert process_task(queued_task.pk, 1) == "internal_error"
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.attempts) == ("failed", 1)
    assert type(exc).__name__ not in queued_task.error_message
    assert type(exc).__name__ in queued_task.error_detail


def upload_failed_on_a_500() -> S3UploadFailedError:
    """What boto3 raises when the bucket answers an upload with a 500: its own error, raised while handling it."""
    error = S3UploadFailedError("Failed to upload sources/x.jpg: An error occurred (InternalError)")
    error.__context__ = ClientError(
        {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutObject"
    )
    return error


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TransientError("remove.bg answered HTTP 503.", code="http_503"), "http_503"),
        (
            RedisConnectionError("Error 111 connecting to localhost:6379. Connection refused."),
            "queue_unavailable",
        ),
        (RedisTimeoutError("Timeout reading from socket"), "queue_unavailable"),
        (MemoryError(), "out_of_memory"),
        (OSError(errno.ENOSPC, "No space left on device"), "storage_unavailable"),
        (OSError(errno.ESTALE, "Stale file handle"), "storage_unavailable"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9/bucket"), "storage_unavailable"),
        (
            ClientError(
                {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"
            ),
            "storage_unavailable",
        ),
        (upload_failed_on_a_500(), "storage_unavailable"),
    ],
    ids=[
        "provider-503",
        "redis-refused",
        "redis-timeout",
        "memory",
        "disk-full",
        "nfs-stale",
        "bucket-unreachable",
        "bucket-slow-down",
        "bucket-upload-500",
    ],  # fmt: skip
)
def test_interruptions_from_outside_our_code_still_retry_with_a_readable_reason(
    queued_task, monkeypatch, exc, code, django_capture_on_commit_callbacks
):
    def interrupted(*args, **kwargs):
        raise exc

    monkeypatch.setattr(task_module, "run_pipeline", interrupted)
    with django_capture_on_commit_callbacks(execute=True):
        assert process_task(queued_task.pk, 1) == code
    queued_task.refresh_from_db()
    assert (queued_task.state, queued_task.error_code, queued_task.error_detail) == ("queued", code, "")
    assert get_process_queue().scheduled_job_registry.get_job_ids() == [job_id_for(queued_task.pk, 2)]
    assert type(exc).__name__ not in queued_task.error_message

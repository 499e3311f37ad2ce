"""Uploads too heavy for a web request (every zip archive, an image too large to decode there) are stored as
sent and brought in by a worker: each file added, a named duplicate or refused with its reason, shown in the
same upload results; retried and reconciled like every other kind of work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from rq.job import Job

from dashboard.intake import import_deferred, import_uploads
from dashboard.models import DeferredUpload
from jobs.deferred_uploads import import_deferred_upload_task
from jobs.queueing import DEFERRED_UPLOADS
from jobs.reconciler import reconcile_task
from tests.conftest import start_worker_process
from tests.dashboard.pages import text_of
from tests.factories import add_source, upload, zip_bytes
from tests.jobs.images import jpeg, photo, png, truncated
from tests.polling import drain_until

pytestmark = pytest.mark.django_db(transaction=True)


def drain(campaign) -> None:
    drain_until(
        lambda: not campaign.deferred_uploads.exclude(state__in=DeferredUpload.TERMINAL_STATES).exists(),
        message=lambda: str(list(campaign.deferred_uploads.values("state", "attempts", "error_message"))),
    )


@pytest.mark.integration
def test_a_zip_and_a_large_image_are_brought_in_by_a_worker_with_a_result_for_each_file(
    marketer_client, campaign, redis_conn, settings
):
    settings.PIXELMILL_WEB_DECODE_MAX_PIXELS = 10_000
    held = jpeg(photo(60, 40, seed=1))
    add_source(campaign, held, "held.jpg")
    good = jpeg(photo(80, 60, seed=2))
    archive = zip_bytes(
        {
            "look/good.jpg": good,
            "copy.jpg": good,
            "held-again.jpg": held,
            "broken.jpg": truncated(jpeg(photo(80, 60, seed=3))),
            "notes.txt": b"call the studio",
        }
    )
    files = [
        upload("shoot.zip", archive),
        upload("poster.png", png(photo(200, 100, seed=4))),  # 20,000 pixels: over this web process's budget
        upload("cut.png", truncated(png(photo(200, 100, seed=5)))),
    ]
    response = marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": files},
        headers={"accept": "application/json"},
    )
    answer = response.json()
    assert response.status_code == 200 and answer["accepted"] == []
    assert [row["name"] for row in answer["checking"]] == ["shoot.zip", "poster.png", "cut.png"]
    assert "Checking shoot.zip, poster.png, cut.png in the background" in answer["message"]
    assert campaign.sources.count() == 1, "nothing was unpacked or decoded in the request"
    progress_url = reverse("campaign-progress", args=[campaign.pk]) + "?format=json"
    assert marketer_client.get(progress_url).json()["uploads_checking"] == 3
    results_url = reverse("campaign-upload-results", args=[campaign.pk])
    waiting = marketer_client.get(results_url)
    assert "HX-Refresh" not in waiting and "hx-trigger" in waiting.content.decode()
    assert "shoot.zip (unpacking), poster.png (a large image), cut.png (a large image)" in text_of(
        waiting.content.decode(), "upload-results"
    )

    sent = [row.file.name for row in campaign.deferred_uploads.all()]
    assert all(default_storage.exists(name) for name in sent)
    worker = start_worker_process("default")
    try:
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    assert marketer_client.get(progress_url).json()["uploads_checking"] == 0
    done = marketer_client.get(results_url)
    assert done["HX-Refresh"] == "true", "the page reloads to show the new images"
    results = text_of(done.content.decode(), "upload-results")
    assert "Added 2 image(s). 2 already in this campaign, skipped. 3 refused." in results
    assert "Still being checked" not in results
    assert (
        "copy.jpg same picture as good.jpg" in results
        and "held-again.jpg same picture as held.jpg" in results
    )
    assert "broken.jpg The file is truncated or corrupt." in results
    assert "cut.png The file is truncated or corrupt." in results
    assert "notes.txt This is not an image we can read" in results
    page = text_of(marketer_client.get(campaign.get_absolute_url()).content.decode(), "upload-results")
    # The same results on the page; only their age ("now", "a second ago") may have moved on meanwhile.
    assert page.startswith("Last upload ") and page.split(":", 1)[1] == results.split(":", 1)[1]
    added = {s.display_name: s for s in campaign.sources.exclude(display_name="held.jpg")}
    assert {name: s.origin for name, s in added.items()} == {"good.jpg": "zip", "poster.png": "upload"}
    assert all(s.thumbnail and default_storage.exists(s.thumbnail.name) for s in added.values())
    assert added["poster.png"].width == 200
    rows = list(campaign.deferred_uploads.all())
    assert [row.state for row in rows] == ["succeeded"] * 3
    assert all(row.file.name == "" for row in rows), "the files as sent are deleted once brought in"
    assert not any(default_storage.exists(name) for name in sent)


def test_an_upload_tried_again_after_an_interruption_counts_what_it_already_added_as_added(campaign):
    archive = zip_bytes({"a.jpg": jpeg(photo(40, 30, seed=1)), "b.jpg": jpeg(photo(40, 30, seed=2))})
    [row] = import_uploads(campaign, [upload("two.zip", archive)]).checking
    import_deferred(row)  # an attempt that added both, then lost its worker before it could say so
    again = import_deferred(row)
    assert [s.display_name for s in again.accepted] == ["a.jpg", "b.jpg"] and again.duplicates == []
    assert campaign.sources.count() == 2


def test_a_duplicate_delivery_does_nothing(campaign, redis_conn):
    [row] = import_uploads(campaign, [upload("one.zip", zip_bytes({"a.jpg": jpeg(photo(40, 30))}))]).checking
    assert import_deferred_upload_task(row.pk, 1) == "succeeded"
    assert import_deferred_upload_task(row.pk, 1) == "skipped"
    row.refresh_from_db()
    assert row.results["counts"] == {"accepted": 1, "duplicates": 0, "refused": 0, "checking": 0}


def test_the_reconciler_resends_an_upload_whose_job_redis_lost(campaign, redis_conn):
    import_uploads(campaign, [upload("lost.zip", zip_bytes({"a.jpg": jpeg(photo(40, 30))}))])
    DeferredUpload.objects.update(queued_at=timezone.now() - timedelta(minutes=5))
    redis_conn.flushdb()
    assert reconcile_task()["deferred_uploads_queue_lost"] == 1
    row = campaign.deferred_uploads.get()
    assert (row.attempts, row.error_code) == (1, "queue_lost")
    assert Job.exists(DEFERRED_UPLOADS.job_id(row.pk, 2), connection=redis_conn)
    drain(campaign)
    assert campaign.deferred_uploads.get().state == "succeeded" and campaign.sources.count() == 1


def test_the_reconciler_takes_back_an_upload_whose_worker_died(campaign, redis_conn):
    [row] = import_uploads(
        campaign, [upload("orphan.zip", zip_bytes({"a.jpg": jpeg(photo(40, 30))}))]
    ).checking
    DeferredUpload.objects.filter(pk=row.pk).update(
        state="running", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile_task()["deferred_uploads_worker_lost"] == 1
    drain(campaign)
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("succeeded", 2)


def test_a_bug_while_unpacking_fails_with_a_plain_message_shown_as_the_archive_refused(
    marketer_client, campaign, redis_conn, monkeypatch
):
    from jobs import deferred_uploads

    def broken(upload):
        raise RuntimeError("'NoneType' object has no attribute 'infolist'")

    monkeypatch.setattr(deferred_uploads, "import_deferred", broken)
    response = marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload("shoot.zip", zip_bytes({"a.jpg": jpeg(photo(40, 30))}))]},
    )
    assert response.status_code == 302
    row = campaign.deferred_uploads.get()
    assert import_deferred_upload_task(row.pk, 1) == "failed"
    row.refresh_from_db()
    assert (row.state, row.error_code) == ("failed", "internal_error")
    results = text_of(marketer_client.get(campaign.get_absolute_url()).content.decode(), "upload-results")
    assert "1 refused." in results
    assert "shoot.zip Something went wrong on our side while bringing in this upload (error ref" in results
    assert "NoneType" not in results


def test_a_dead_upload_whose_file_is_still_stored_is_tried_again_from_the_admin(
    admin_client, campaign, redis_conn
):
    """Before, a dead upload's kept file could only wait: there was no admin page and no way to try again."""
    archive = zip_bytes({"a.jpg": jpeg(photo(40, 30, seed=1)), "b.jpg": jpeg(photo(40, 30, seed=2))})
    [dead] = import_uploads(campaign, [upload("late.zip", archive)]).checking
    [gone] = import_uploads(
        campaign, [upload("gone.zip", zip_bytes({"c.jpg": jpeg(photo(40, 30))}))]
    ).checking
    redis_conn.flushdb()
    # Five attempts lost to storage being away; the second one's file went since.
    DeferredUpload.objects.update(
        state="dead", attempts=5, error_code="storage", error_message="Storage away."
    )
    default_storage.delete(gone.file.name)
    DeferredUpload.objects.filter(pk=gone.pk).update(file="")

    changelist = reverse("admin:dashboard_deferredupload_changelist")
    assert "late.zip" in admin_client.get(changelist).content.decode()
    response = admin_client.post(
        changelist, {"action": "try_uploads_again", "_selected_action": [dead.pk, gone.pk]}, follow=True
    )
    page = response.content.decode()
    assert "Queued 1 upload(s) again. 1 were left" in page
    assert campaign.deferred_uploads.get(pk=gone.pk).state == "dead"
    drain(campaign)
    dead.refresh_from_db()
    assert (dead.state, dead.attempts, dead.error_message) == ("succeeded", 6, "")
    assert sorted(campaign.sources.values_list("display_name", flat=True)) == ["a.jpg", "b.jpg"]
    assert (
        admin_client.get(reverse("admin:dashboard_deferredupload_change", args=[dead.pk])).status_code == 200
    )


def test_a_zip_stored_in_a_bucket_is_unpacked_from_it_and_deleted_after(campaign, redis_conn, s3_bucket):
    """A worker on another machine reads the upload from the bucket, not from a local folder."""
    archive = zip_bytes({f"look-{n}.jpg": jpeg(photo(80, 60, seed=n)) for n in range(3)})
    (deferred,) = import_uploads(campaign, [upload("shoot.zip", archive)]).checking
    assert s3_bucket.objects() == {deferred.file.name: len(archive)}

    drain(campaign)
    deferred.refresh_from_db()
    assert deferred.state == DeferredUpload.State.SUCCEEDED, deferred.error_message
    objects = s3_bucket.objects()
    assert deferred.file.name not in objects, "the archive is deleted once brought in"
    sources = list(campaign.sources.all())
    assert len(sources) == 3
    assert all(source.file.name in objects and source.thumbnail.name in objects for source in sources)

"""Media in an S3-compatible bucket (moto's server on loopback): the storage API the app uses, files streamed
out of it a piece at a time, downloads redirected to presigned links only after the team check, and a whole
campaign uploaded, rendered and zipped with nothing written to the local media folder."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc
import zipfile
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.test import Client
from django.urls import reverse

from dashboard.exports import campaign_zip
from dashboard.models import Campaign, Output, Task, Team
from dashboard.storage import read_bytes, read_chunks
from tests.conftest import run_burst_worker
from tests.factories import make_approved_outputs, upload
from tests.jobs.images import jpeg, product_on_white

MB = 1024 * 1024


def media_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_files_are_saved_read_listed_and_deleted_in_the_bucket(s3_bucket):
    before = media_files()
    name = default_storage.save("sources/c1/ab/abc.jpg", ContentFile(b"jpeg bytes"))
    assert name == "sources/c1/ab/abc.jpg"
    assert s3_bucket.objects() == {name: 10}
    assert default_storage.exists(name) and default_storage.size(name) == 10
    with default_storage.open(name, "rb") as handle:
        assert handle.read() == b"jpeg bytes"
    assert default_storage.save(name, ContentFile(b"again")) == name, (
        "our keys are overwritten, never renamed"
    )
    assert s3_bucket.read(name) == b"again"

    default_storage.delete(name)
    assert not default_storage.exists(name)
    assert s3_bucket.objects() == {}
    with pytest.raises(FileNotFoundError):
        default_storage.open(name, "rb")
    assert media_files() == before, "nothing reached the local media folder"


def test_a_files_url_is_a_short_lived_presigned_link_and_the_bucket_stays_private(s3_bucket):
    name = default_storage.save("outputs/c1/t1/square.png", ContentFile(b"png bytes"))
    url = default_storage.url(name)
    assert url.startswith(s3_bucket.server.endpoint_url) and "X-Amz-Signature=" in url
    assert "X-Amz-Expires=300" in url, "PIXELMILL_STORAGE_URL_SECONDS"
    assert httpx.get(url).content == b"png bytes"
    with pytest.raises(NotImplementedError):
        default_storage.path(name)  # no local path: nothing may assume one


def test_a_stored_file_is_read_a_piece_at_a_time(s3_bucket):
    data = os.urandom(3 * MB)
    name = default_storage.save("outputs/c1/t1/large.png", ContentFile(data))
    tracemalloc.start()
    try:
        chunks = [len(chunk) for chunk in read_chunks(name, chunk_size=256 * 1024)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(chunks) == len(data) and max(chunks) <= 256 * 1024
    assert peak < MB, f"streaming a 3 MB object held {peak:,} bytes at once"
    with pytest.raises(FileNotFoundError):
        next(read_chunks("outputs/c1/t1/missing.png"))


def test_a_file_read_whole_from_the_bucket_is_held_once(s3_bucket):
    """What a worker does with a source before decoding it: one copy, no spooled download beside it."""
    data = os.urandom(6 * MB)
    name = default_storage.save("sources/c1/ab/large.jpg", ContentFile(data))
    tracemalloc.start()
    try:
        read = read_bytes(name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == data
    assert peak < 1.5 * len(data), f"reading a 6 MB object held {peak:,} bytes at its peak"


def test_the_campaign_zip_streams_outputs_from_the_bucket_without_holding_one_whole(
    s3_bucket, campaign, ready_recipes
):
    (output,) = make_approved_outputs(campaign, ready_recipes["sale-banner"], 1)
    large = os.urandom(12 * MB)  # an incompressible stand-in for a large output
    default_storage.save(output.file.name, ContentFile(large))
    Output.objects.filter(pk=output.pk).update(byte_size=len(large))

    archive = campaign_zip(campaign)
    tracemalloc.start()
    try:
        size = 0
        for chunk in archive:
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == len(archive) > len(large)
    assert peak < 4 * MB, f"zipping a 12 MB output held {peak:,} bytes at once"

    body = b"".join(campaign_zip(campaign))
    (entry,) = [name for name in zipfile.ZipFile(io.BytesIO(body)).namelist() if name != "manifest.csv"]
    assert zipfile.ZipFile(io.BytesIO(body)).read(entry) == large


@pytest.fixture
def stored_output(s3_bucket, campaign, ready_recipes) -> Output:
    (output,) = make_approved_outputs(campaign, ready_recipes["sale-banner"], 1)
    return output


@pytest.fixture
def outsider_client(db, django_user_model) -> Client:
    """A signed-in member of another team."""
    other = Team.objects.create(name="Other brand")
    user = django_user_model.objects.create_user("otto", password="pw-otto-12345")
    other.members.add(user)
    client = Client()
    client.force_login(user)
    return client


def test_a_download_redirects_to_a_presigned_link_when_the_setting_says_so(
    stored_output, marketer_client, settings, s3_bucket
):
    settings.PIXELMILL_STORAGE_REDIRECT_DOWNLOADS = True
    response = marketer_client.get(reverse("output-download", args=[stored_output.pk]))
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    link = response["Location"]
    assert link.startswith(f"{s3_bucket.server.endpoint_url}/") and "X-Amz-Signature=" in link

    fetched = httpx.get(link)
    assert fetched.status_code == 200
    assert fetched.content == s3_bucket.read(stored_output.file.name)
    assert fetched.headers["content-disposition"] == 'attachment; filename="look-00-square.png"'
    assert fetched.headers["content-type"] == "image/png"


def test_another_teams_download_is_refused_before_any_link_is_made(stored_output, outsider_client, settings):
    settings.PIXELMILL_STORAGE_REDIRECT_DOWNLOADS = True
    response = outsider_client.get(reverse("output-download", args=[stored_output.pk]))
    assert response.status_code == 404
    assert "Location" not in response and b"X-Amz" not in response.content
    anonymous = Client().get(reverse("output-download", args=[stored_output.pk]))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))


def test_without_the_setting_and_inside_pages_the_dashboard_streams_the_file_itself(
    stored_output, marketer_client, settings, s3_bucket
):
    data = s3_bucket.read(stored_output.file.name)
    response = marketer_client.get(reverse("output-download", args=[stored_output.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Disposition"] == 'attachment; filename="look-00-square.png"'

    settings.PIXELMILL_STORAGE_REDIRECT_DOWNLOADS = True
    inline = marketer_client.get(reverse("output-download", args=[stored_output.pk]) + "?inline=1")
    assert inline.status_code == 200, "an image shown in a page stays same-origin (the CSP's img-src)"
    assert b"".join(inline.streaming_content) == data
    assert inline["Content-Type"] == "image/png"


def test_a_file_missing_from_the_bucket_is_a_404(stored_output, marketer_client):
    default_storage.delete(stored_output.file.name)
    assert marketer_client.get(reverse("output-download", args=[stored_output.pk])).status_code == 404
    assert marketer_client.get(reverse("output-thumbnail", args=[stored_output.pk])).status_code == 404


def test_thumbnails_are_made_from_the_bucket_and_kept_in_it(stored_output, marketer_client, s3_bucket):
    response = marketer_client.get(reverse("output-thumbnail", args=[stored_output.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert stored_output.thumbnail_key() in s3_bucket.objects()


def test_the_readiness_check_writes_reads_and_deletes_in_the_bucket(db, redis_conn, client, s3_bucket):
    response = client.get(reverse("readyz"))
    assert response.status_code == 200 and b"storage: ok" in response.content
    assert s3_bucket.objects() == {}, "the probe file was deleted"


@pytest.mark.integration
def test_a_whole_campaign_is_uploaded_rendered_and_zipped_through_the_bucket(
    s3_bucket, marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    before = media_files()
    files = {f"look-{n}.jpg": jpeg(product_on_white(320, 240, seed=n)) for n in range(3)}
    response = marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]), {"files": [upload(n, d) for n, d in files.items()]}
    )
    assert response.status_code in (200, 302)
    recipe = ready_recipes["sale-banner"]
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(reverse("campaign-process", args=[campaign.pk]), {"recipes": [recipe.pk]})
    with django_capture_on_commit_callbacks(execute=True):
        run_burst_worker()

    tasks = Task.objects.filter(campaign=campaign)
    assert set(tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    objects = s3_bucket.objects()
    outputs = Output.objects.filter(task__campaign=campaign)
    assert outputs.count() == 3 * recipe.outputs.count()
    for output in outputs:
        assert objects[output.file.name] == output.byte_size
    for task in tasks.select_related("source"):
        assert task.preview.name in objects
        assert {task.source.file.name, task.source.thumbnail.name} <= objects.keys()

    archive = marketer_client.get(reverse("campaign-download", args=[campaign.pk]))
    body = b"".join(archive.streaming_content)
    assert int(archive["Content-Length"]) == len(body)
    zipped = zipfile.ZipFile(io.BytesIO(body))
    assert len(zipped.namelist()) == outputs.count() + 1
    assert sorted(zipped.read(name) for name in zipped.namelist() if name != "manifest.csv") == sorted(
        s3_bucket.read(output.file.name) for output in outputs
    )
    assert media_files() == before, "nothing reached the local media folder"
    assert Campaign.objects.get(pk=campaign.pk).tasks.count() == 3


def test_requests_on_one_thread_share_a_connection_and_each_worker_thread_has_its_own(s3_bucket):
    """Under gunicorn's gevent workers `threading.local` is per greenlet, that is per request: a request must
    not pay for a new boto3 session and resource (70 to 140 ms)."""
    storage = storages["default"]
    first = storage.connection
    storage._connections = threading.local()  # what the next request's greenlet sees
    assert storage.connection is first

    seen = []
    thread = threading.Thread(target=lambda: seen.append(storage.connection))
    thread.start()
    thread.join()
    assert seen[0] is not first

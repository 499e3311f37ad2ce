"""Pages: login everywhere, upload, process, progress, failures and requeue (confirm then POST), downloads."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from dashboard.models import Campaign, Output, Task, Team
from tests.conftest import run_burst_worker
from tests.dashboard.pages import find_all, text_of, visible_text
from tests.factories import make_task, multipart_body, upload, zip_bytes
from tests.jobs.images import jpeg, photo, product_on_white, truncated


@pytest.fixture
def processed_campaign(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    """A campaign with two product shots processed by the e-commerce pack through a real RQ worker."""
    files = [
        upload("shoe.jpg", jpeg(product_on_white(960, 720, seed=1))),
        upload("bag.jpg", jpeg(product_on_white(900, 780, seed=2))),
    ]
    marketer_client.post(reverse("campaign-upload", args=[campaign.pk]), {"files": files})
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(
            reverse("campaign-process", args=[campaign.pk]), {"recipes": [ready_recipes["ecommerce-pack"].pk]}
        )
    with django_capture_on_commit_callbacks(execute=True):
        run_burst_worker()
    return campaign


@pytest.mark.parametrize(
    "name",
    ["campaign-list", "campaign-detail", "campaign-progress", "campaign-download", "campaign-failures"],
)
def test_every_page_requires_login(client, campaign, name):
    url = reverse(name) if name == "campaign-list" else reverse(name, args=[campaign.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_marketer_creates_a_campaign(marketer_client, team):
    response = marketer_client.post(reverse("campaign-list"), {"name": "Black Friday", "team": team.pk})
    campaign = Campaign.objects.get(name="Black Friday")
    assert response.url == campaign.get_absolute_url()
    assert campaign.team == team


def test_upload_reports_refused_files_by_name_and_reason(
    marketer_client, campaign, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(
            reverse("campaign-upload", args=[campaign.pk]),
            {
                "files": [
                    upload("good.jpg", jpeg(photo(80, 60, seed=1))),
                    upload("bad.jpg", truncated(jpeg(photo(80, 60, seed=2)))),
                    upload("pack.zip", zip_bytes({"z.jpg": jpeg(photo(80, 60, seed=3))})),
                ]
            },
            follow=True,
        )
    results = text_of(response.content.decode(), "upload-results")
    assert "Added 1 image(s)." in results
    assert "bad.jpg" in results and "truncated or corrupt" in results
    assert "Still being checked in the background: pack.zip (unpacking)" in results
    # A worker unpacks the archive; its images join the same results.
    run_burst_worker()
    results = text_of(marketer_client.get(campaign.get_absolute_url()).content.decode(), "upload-results")
    assert "Added 2 image(s)." in results and "z.jpg" in results and "Still being checked" not in results
    assert campaign.sources.count() == 2


def test_upload_answers_json_for_the_drag_and_drop_script(marketer_client, campaign):
    response = marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload("bad.png", b"<html>not a png</html>")]},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["refused"][0]["name"] == "bad.png"
    assert "not an image" in response.json()["message"]


def test_process_creates_one_task_per_image_and_recipe_and_enqueues_after_commit(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload(f"{n}.jpg", jpeg(photo(60, 40, seed=n))) for n in range(3)]},
    )
    url = reverse("campaign-process", args=[campaign.pk])
    recipes = [ready_recipes["social-ads-pack"].pk, ready_recipes["sale-banner"].pk]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        marketer_client.post(url, {"recipes": recipes})
    assert Task.objects.filter(campaign=campaign, state="queued").count() == 6
    assert redis_conn.llen("rq:queue:default") == 0  # nothing reaches Redis before the commit
    for callback in callbacks:
        callback()
    job_ids = {job_id.decode() for job_id in redis_conn.lrange("rq:queue:default", 0, -1)}
    assert job_ids == {f"task-{pk}-a1" for pk in campaign.tasks.values_list("pk", flat=True)}
    # Pressing Process again creates nothing new for the same recipe versions.
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(url, {"recipes": recipes}, follow=True)
    assert "Nothing new to process" in response.content.decode()
    assert campaign.tasks.count() == 6


def test_progress_fragment_and_json(processed_campaign, marketer_client):
    url = reverse("campaign-progress", args=[processed_campaign.pk])
    fragment = marketer_client.get(url).content.decode()
    assert "100%" in fragment and "hx-trigger" not in fragment  # finished: polling stops
    data = marketer_client.get(url, {"format": "json"}).json()
    assert data["total"] == 2 and data["percent"] == 100 and data["counts"] == {"succeeded": 2}


def test_progress_polls_while_work_remains(marketer_client, campaign, ready_recipes):
    make_task(campaign, ready_recipes["sale-banner"], state=Task.State.QUEUED)
    fragment = marketer_client.get(reverse("campaign-progress", args=[campaign.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "0%" in fragment


def test_gallery_shows_outputs_and_one_output_downloads(processed_campaign, marketer_client):
    page = marketer_client.get(processed_campaign.get_absolute_url()).content.decode()
    assert "shoe.jpg" in page and "zoom 2000×2000" in page
    task = processed_campaign.tasks.get(source__display_name="shoe.jpg")
    output = task.outputs.get(name="product")
    response = marketer_client.get(reverse("output-download", args=[output.pk]))
    assert response["Content-Disposition"].startswith('attachment; filename="shoe-product.jpg"')
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.size == (800, 800) and image.format == "JPEG"
    assert marketer_client.get(reverse("task-preview", args=[task.pk])).status_code == 200
    assert marketer_client.get(reverse("source-thumbnail", args=[task.source_id])).status_code == 200


def test_the_gallery_shows_each_output_as_a_small_picture_kept_for_the_next_visit(
    processed_campaign, marketer_client
):
    page = marketer_client.get(processed_campaign.get_absolute_url()).content.decode()
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="zoom")
    url = reverse("output-gallery-thumbnail", args=[output.pk])
    [picture] = find_all(page, "img", src=url)
    assert picture.attrs["alt"] == "zoom 2000×2000"
    [link] = [a for a in find_all(page, "a", class_="output") if a.attrs["data-output"] == "zoom"
              and a.attrs["href"] == reverse("output-compare", args=[output.pk])]  # fmt: skip
    # ⚠ first: a 2000×2000 zoom from a 960×720 photo is flagged as enlarged.
    assert link.attrs["title"].startswith("⚠ zoom 2000×2000 · ")
    response = marketer_client.get(url)
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.format == "WEBP" and max(image.size) == 160
    assert "private" in response["Cache-Control"]
    assert default_storage.exists(output.thumbnail_key(160))  # made once, then served as it is


def test_campaign_zip_holds_every_output_and_a_manifest(processed_campaign, marketer_client):
    response = marketer_client.get(reverse("campaign-download", args=[processed_campaign.pk]))
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    archive = zipfile.ZipFile(io.BytesIO(body))
    names = set(archive.namelist())
    assert "ecommerce-pack/zoom/shoe.jpg" in names and "ecommerce-pack/thumbnail-webp/bag.webp" in names
    assert len(names) == 2 * 6 + 1
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert len(rows) == 12 and {row["path"] for row in rows} == names - {"manifest.csv"}
    assert Image.open(io.BytesIO(archive.read("ecommerce-pack/thumbnail/shoe.jpg"))).size == (150, 150)


def test_a_failed_task_shows_its_reason_and_requeues_after_confirmation(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    # A busy photo has no plain backdrop: background removal told to refuse (not keep it whole) refuses it,
    # permanently.
    recipe = ready_recipes["ecommerce-pack"]
    recipe.steps.filter(operation="remove_background").update(params={"if_unsuitable": "refuse"})
    recipe.publish_version()
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload("street.jpg", jpeg(photo(200, 150)))]},
    )
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(
            reverse("campaign-process", args=[campaign.pk]), {"recipes": [ready_recipes["ecommerce-pack"].pk]}
        )
    run_burst_worker()
    task = campaign.tasks.get()
    assert task.state == "failed" and task.attempts == 1 and task.error_step == "remove_background"
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "street.jpg" in page and "plain" in task.error_message and task.error_message in page
    # On its card: the cause on one line, the whole reason one click away.
    [reason] = find_all(page, "details", class_="short-reason")
    [summary] = find_all(page, "summary", title=task.error_message)
    assert summary.text == f"Photo does not suit the recipe: {task.error_message}"
    assert "Requeue…" in reason.text and "open" not in reason.attrs

    url = reverse("task-requeue", args=[task.pk])
    confirm = marketer_client.get(url)
    assert "Yes, requeue" in confirm.content.decode()
    task.refresh_from_db()
    assert task.state == "failed"  # GET only asks
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(url)
    task.refresh_from_db()
    assert task.state == "queued" and task.max_attempts == 1 + task.attempts + 4
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [f"task-{task.pk}-a2".encode()]


def test_requeue_all_failed(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    for n in range(3):
        make_task(campaign, ready_recipes["sale-banner"], sha=f"{n:064d}", state=Task.State.DEAD, attempts=5)
    url = reverse("campaign-requeue-failed", args=[campaign.pk])
    assert "3 failed tasks" in marketer_client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(url)
    assert set(campaign.tasks.values_list("state", flat=True)) == {"queued"}
    assert redis_conn.llen("rq:queue:default") == 3


def test_state_changes_need_the_csrf_token(marketer, campaign):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    assert client.post(reverse("campaign-requeue-failed", args=[campaign.pk])).status_code == 403
    assert client.post(reverse("campaign-process", args=[campaign.pk])).status_code == 403


def test_another_teams_campaign_answers_404(processed_campaign, django_user_model):
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    output = processed_campaign.tasks.first().outputs.first()
    for url in [
        processed_campaign.get_absolute_url(),
        reverse("campaign-download", args=[processed_campaign.pk]),
        reverse("output-download", args=[output.pk]),
        reverse("output-gallery-thumbnail", args=[output.pk]),
        reverse("task-requeue", args=[output.task_id]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("task-requeue", args=[output.task_id])).status_code == 404
    assert processed_campaign.get_absolute_url() not in client.get(reverse("campaign-list")).content.decode()


def test_rq_pages_need_their_own_permission(db, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("sam", password="pw-sam-12345", is_staff=True)
    client = Client()
    client.force_login(staff)
    url = reverse("django_rq:home")
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_queues"))
    assert client.get(url).status_code == 200


def test_too_many_files_is_a_413_with_a_way_out(marketer_client, campaign, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [upload(f"{n}.jpg", jpeg(photo(20, 20, seed=n))) for n in range(3)]
    response = marketer_client.post(reverse("campaign-upload", args=[campaign.pk]), {"files": files})
    assert response.status_code == 413
    assert "at most 2 files" in response.content.decode()
    assert campaign.sources.count() == 0


def test_an_upload_declaring_more_than_the_request_limit_is_a_413_before_it_is_read(
    marketer_client, campaign, settings
):
    settings.PIXELMILL_MAX_REQUEST_BYTES = 10_000
    files = [upload("big.jpg", jpeg(photo(200, 200, seed=1)) + b"\0" * 20_000)]
    response = marketer_client.post(reverse("campaign-upload", args=[campaign.pk]), {"files": files})
    assert response.status_code == 413
    assert "may carry at most 9.8\xa0KB" in response.content.decode()
    assert campaign.sources.count() == 0


def test_the_gallery_flags_each_output_that_breaks_a_channel_rule_with_the_rule(
    marketer_client, campaign, ready_recipes
):
    task = make_task(campaign, ready_recipes["social-ads-pack"], state=Task.State.SUCCEEDED)
    message = "183 KB, over the 150 KB limit (even at quality 30)"
    task.outputs.create(name="display-300x250", file="x.jpg", width=300, height=250, format="jpeg",
                        byte_size=187_000, quality=30, violations=[{"rule": "max_bytes", "message": message}])  # fmt: skip
    task.outputs.create(
        name="facebook", file="y.jpg", width=1200, height=628, format="jpeg", byte_size=90_000
    )
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "1 output breaks a channel rule" in page
    [flagged] = find_all(page, "a", class_="output violates")
    assert flagged.attrs["data-output"] == "display-300x250" and flagged.text == "⚠"
    assert flagged.attrs["title"].startswith("⚠ display-300x250 300×250")
    assert flagged.attrs["title"].endswith(f" · ⚠ {message}"), "the reason, on hovering the ⚠"
    # The output's own page lists the rules it breaks.
    output_page = marketer_client.get(flagged.attrs["href"]).content.decode()
    assert f"display-300x250: {message}" in visible_text(output_page)
    assert [img.attrs["alt"] for img in find_all(page, "img") if "/gallery.webp" in img.attrs["src"]] == [
        "display-300x250 300×250",
        "facebook 1200×628",
    ]


def failed_tasks(campaign, recipe, codes: list[str], **fields) -> list[Task]:
    return [
        make_task(campaign, recipe, sha=f"{n:064d}", state=Task.State.FAILED, attempts=1, error_code=code,
                  error_step=fields.get("step", "remove_background"), error_message=f"failed: {code}")
        for n, code in enumerate(codes)
    ]  # fmt: skip


def test_failures_are_grouped_by_cause_in_plain_words_with_counts(marketer_client, campaign, ready_recipes):
    failed_tasks(
        campaign,
        ready_recipes["ecommerce-pack"],
        ["rate_limited", "rate_limit_wait", "http_503", "unreadable"],
    )
    page = marketer_client.get(reverse("campaign-failures", args=[campaign.pk])).content.decode()
    causes = re.findall(r'data-cause="([a-z_]+)"', page)
    assert causes == ["rate_limited", "provider_down", "unreadable"]
    assert "Rate limited" in page and "Requeue these 2…" in page and "Unreadable file" in page
    filtered = marketer_client.get(
        reverse("campaign-failures", args=[campaign.pk]), {"cause": "rate_limited"}
    )
    text = filtered.content.decode()
    assert [h1.text for h1 in find_all(text, "h1")] == ["Failures: Rate limited"]
    assert "failed: http_503" not in text
    assert "failed: rate_limit_wait" in text
    detail = marketer_client.get(campaign.get_absolute_url()).content.decode()
    # The campaign page says it on one line at the top, each cause a link to its failures.
    notice = text_of(detail, "failure-causes")
    assert notice.startswith(
        "4 results failed: Rate limited (2), Provider unavailable (1), Unreadable file (1)"
    )
    assert find_all(
        detail, "a", href=reverse("campaign-failures", args=[campaign.pk]) + "?cause=rate_limited"
    )


def test_the_failures_page_names_kinds_of_error_in_plain_words_never_codes(
    marketer_client, campaign, ready_recipes
):
    failed_tasks(campaign, ready_recipes["ecommerce-pack"], ["rate_limited", "rate_limit_wait", "unreadable"])
    url = reverse("campaign-failures", args=[campaign.pk])
    page = marketer_client.get(url).content.decode()
    [narrow] = find_all(page, "p", class_="codes")  # only the cause with more than one kind of error
    assert narrow.text == "Only: Waited too long for the provider · The provider asked us to slow down"
    assert "<code>" not in page
    one_kind = marketer_client.get(url, {"code": "rate_limit_wait"}).content.decode()
    assert [h1.text for h1 in find_all(one_kind, "h1")] == ["Failures: Waited too long for the provider"]
    cells = [td.text for td in find_all(one_kind, "td")]
    assert "Rate limited Waited too long for the provider" in cells and "Remove background" in cells


def test_a_whole_cause_is_requeued_after_confirmation_and_other_causes_stay(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    limited, _, unreadable = failed_tasks(
        campaign, ready_recipes["ecommerce-pack"], ["rate_limited", "http_429", "unreadable"]
    )
    url = reverse("campaign-requeue-failed", args=[campaign.pk]) + "?cause=rate_limited"
    confirm = marketer_client.get(url).content.decode()
    assert (
        "Requeue 1 failed task (rate limited)?" in confirm and "Our workers (no provider, no cost)" in confirm
    )
    assert Task.objects.get(pk=limited.pk).state == "failed"  # GET only asks
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(url, follow=True)
    assert "Requeued 1 task(s)." in response.content.decode()
    assert Task.objects.get(pk=limited.pk).state == "queued"
    assert Task.objects.get(pk=unreadable.pk).state == "failed"


def test_a_group_can_be_requeued_with_another_provider_for_its_failing_step(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    from dashboard.models import Provider

    Provider.objects.create(
        name="Photoroom", slug="photoroom", kind="photoroom", base_url="https://sdk.photoroom.com"
    )
    Provider.objects.create(
        name="Upscaler", slug="pp", kind="pixelpanda", base_url="https://pp.example.com", is_active=False
    )
    [task] = failed_tasks(campaign, ready_recipes["ecommerce-pack"], ["no_plain_background"])
    url = reverse("campaign-requeue-failed", args=[campaign.pk]) + "?cause=unsuitable"
    confirm = marketer_client.get(url).content.decode()
    assert "Run remove background with" in confirm and "Photoroom (0.00 USD a call)" in confirm
    assert "Upscaler" not in confirm  # switched off
    assert "version-choice" not in confirm  # every task is on its recipe's current version already
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(
            url, {"version": "same", "provider_remove_background": "photoroom"}, follow=True
        )
    assert "Requeued 1 task(s); remove background with Photoroom." in response.content.decode()
    task.refresh_from_db()
    assert task.state == "queued" and task.provider_overrides == {"remove_background": "photoroom"}
    assert [type(step).__name__ for step in task.build_steps()] == ["RemoteStep", "Canvas"]


def test_the_last_uploads_results_stay_on_the_campaign_page_until_dismissed(marketer_client, campaign):
    shoe = jpeg(photo(80, 60, seed=1))
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]), {"files": [upload("shoe.jpg", shoe)]}
    )
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload("bag.jpg", jpeg(photo(80, 60, seed=2))), upload("shoe-2.jpg", shoe),
                   upload("notes.jpg", b"not a picture")]},
    )  # fmt: skip
    for _ in range(2):  # a reload does not lose them
        page = marketer_client.get(campaign.get_absolute_url()).content.decode()
        results = text_of(page, "upload-results")
        assert "Added 1 image(s). 1 already in this campaign, skipped. 1 refused." in results
        assert [row.text for row in find_all(page, "li", class_="accepted-file")] == [
            "bag.jpg"
        ]  # the last upload's
        assert [row.text for row in find_all(page, "li", class_="duplicate-file")] == [
            "shoe-2.jpg same picture as shoe.jpg"
        ]
        [refused] = find_all(page, "li", class_="refused-file")
        assert refused.text.startswith("notes.jpg ") and "not an image" in refused.text
    response = marketer_client.post(reverse("campaign-upload-results-dismiss", args=[campaign.pk]))
    assert response.url == campaign.get_absolute_url()
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert not find_all(page, id="upload-results")


def test_upload_results_are_kept_per_campaign(marketer_client, campaign, team):
    other = Campaign.objects.create(name="Other", team=team, created_by=campaign.created_by)
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]), {"files": [upload("a.jpg", jpeg(photo(40, 30)))]}
    )
    assert find_all(marketer_client.get(campaign.get_absolute_url()).content.decode(), id="upload-results")
    assert not find_all(marketer_client.get(other.get_absolute_url()).content.decode(), id="upload-results")


def json_upload(client, campaign, parts):
    body, content_type = multipart_body(parts)
    return client.post(
        reverse("campaign-upload", args=[campaign.pk]), body, content_type=content_type,
        headers={"accept": "application/json"},
    )  # fmt: skip


def test_json_clients_get_json_for_requests_refused_before_the_view(marketer_client, campaign, settings):
    picture = jpeg(photo(40, 30, seed=1))
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = json_upload(marketer_client, campaign, [("files", f"{n}.jpg", picture) for n in range(3)])
    assert (response.status_code, response["Content-Type"]) == (413, "application/json")
    assert "at most 2 files" in response.json()["error"]

    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    response = json_upload(marketer_client, campaign, [(f"f{n}", None, b"x") for n in range(4)])
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert "fields" in response.json()["error"]

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = json_upload(
        marketer_client, campaign, [("note", None, b"x" * 500), ("files", "a.jpg", picture)]
    )
    assert (response.status_code, response["Content-Type"]) == (413, "application/json")
    assert response.json()["error"]

    body, content_type = multipart_body([("files", "a.jpg", picture)])
    response = marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]), body[:-200], content_type=content_type,
        headers={"accept": "application/json"},
    )  # fmt: skip
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert "could not be read" in response.json()["error"]
    assert campaign.sources.count() == 0


def test_json_clients_get_json_when_djangos_parser_refuses_a_request_elsewhere(marketer_client, campaign):
    """A name over 1 KB makes Django's own multipart parser give up on the whole request (any page but the
    upload, which reads its files itself): a JSON client still gets JSON saying so."""
    body, content_type = multipart_body([("urls", "x" * 1500 + ".csv", b"https://example.com/a.jpg")])
    response = marketer_client.post(
        reverse("campaign-import-urls", args=[campaign.pk]), body, content_type=content_type,
        headers={"accept": "application/json"},
    )  # fmt: skip
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json()["error"]
    html = marketer_client.post(
        reverse("campaign-import-urls", args=[campaign.pk]), body, content_type=content_type
    )
    assert html.status_code == 400 and html["Content-Type"].startswith("text/html")


def test_a_stale_csrf_token_answers_json_to_the_upload_script(marketer, campaign):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    response = json_upload(client, campaign, [("files", "a.jpg", jpeg(photo(40, 30, seed=1)))])
    assert (response.status_code, response["Content-Type"]) == (403, "application/json")
    assert "reload the page" in response.json()["error"]
    assert client.post(reverse("campaign-upload", args=[campaign.pk])).status_code == 403
    dismiss = reverse("campaign-upload-results-dismiss", args=[campaign.pk])
    assert client.get(dismiss).status_code == 405 and client.post(dismiss).status_code == 403


def test_a_request_over_the_size_limit_answers_json_to_a_json_client(marketer_client, campaign, settings):
    settings.PIXELMILL_MAX_REQUEST_BYTES = 10_000
    response = json_upload(marketer_client, campaign, [("files", "big.jpg", b"\0" * 20_000)])
    assert (response.status_code, response["Content-Type"]) == (413, "application/json")
    assert "may carry at most" in response.json()["error"]


def open_sections(page: str) -> dict[str, bool]:
    return {s.attrs["id"]: "open" in s.attrs for s in find_all(page, "details", class_="section")}


def test_the_campaign_page_folds_its_sections_and_opens_where_the_next_step_is(
    marketer_client, processed_campaign
):
    empty = Campaign.objects.create(name="Empty", team=processed_campaign.team)
    page = marketer_client.get(empty.get_absolute_url()).content.decode()
    assert open_sections(page) == {"add-images": True, "process": False, "gallery": False, "deliver": False}

    page = marketer_client.get(processed_campaign.get_absolute_url()).content.decode()
    assert open_sections(page) == {"add-images": False, "process": False, "gallery": True, "deliver": False}
    summaries = [
        s.text for s in find_all(page, "summary") if s.text.split()[0] in ("Add", "Gallery", "Share")
    ]
    assert summaries == [
        "Add images 2 images in this campaign",
        "Gallery 12 outputs: 0 approved, 12 to review",
        "Share & deliver 0 approved outputs to share · webhook off",
    ]

    # A new image nobody processed yet: Process is next. Approved outputs: sharing is.
    marketer_client.post(
        reverse("campaign-upload", args=[processed_campaign.pk]),
        {"files": [upload("new.jpg", jpeg(photo(60, 40)))]},
    )
    Output.objects.filter(task__campaign=processed_campaign).update(review="approved")
    page = marketer_client.get(processed_campaign.get_absolute_url()).content.decode()
    assert open_sections(page) == {"add-images": False, "process": True, "gallery": True, "deliver": True}


def test_an_upload_that_refused_a_file_keeps_add_images_open_and_says_so_at_the_top(
    marketer_client, campaign
):
    """Every upload says what it did in one line at the top until dismissed; a clean one folds Add images
    away (its images are in the gallery), one with a refusal keeps it open."""
    url = reverse("campaign-upload", args=[campaign.pk])
    marketer_client.post(url, {"files": [upload("shoe.jpg", jpeg(photo(80, 60, seed=1)))]})
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert open_sections(page)["add-images"] is False
    assert text_of(page, "upload-notice") == "Last upload: Added 1 image(s). See which Dismiss"

    marketer_client.post(url, {"files": [upload("notes.jpg", b"not a picture")]})
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert open_sections(page)["add-images"] is True
    assert text_of(page, "upload-notice") == "Last upload: Added 0 image(s). 1 refused. See which Dismiss"


def add_tasks(
    campaign, recipe, count: int, *, first: int = 0, state: str = "succeeded", **fields
) -> list[Task]:
    return [
        make_task(campaign, recipe, sha=f"{n:064x}", state=state, **fields)
        for n in range(first, first + count)
    ]


def count_queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: the session and any figures cached on a first view
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_campaign_page_runs_as_many_queries_for_100_tasks_as_for_10(
    marketer_client, campaign, ready_recipes, django_assert_max_num_queries
):
    recipe = ready_recipes["social-ads-pack"]
    add_tasks(campaign, recipe, 10, state="failed", error_code="timeout")
    url = reverse("campaign-detail", args=[campaign.pk])
    few = count_queries(marketer_client, url)
    add_tasks(campaign, recipe, 90, first=10, state="failed", error_code="timeout")
    with django_assert_max_num_queries(few):
        marketer_client.get(url)


def test_the_campaign_list_shows_25_campaigns_a_page_in_as_many_queries_for_40_as_for_2(
    marketer_client, team, ready_recipes
):
    recipe = ready_recipes["social-ads-pack"]
    for n in range(2):
        add_tasks(Campaign.objects.create(name=f"Week {n}", team=team), recipe, 3, first=n * 3)
    few = count_queries(marketer_client, reverse("campaign-list"))
    for n in range(2, 40):
        add_tasks(Campaign.objects.create(name=f"Week {n}", team=team), recipe, 3, first=n * 3)
    assert count_queries(marketer_client, reverse("campaign-list")) <= few

    first = marketer_client.get(reverse("campaign-list")).content.decode()
    assert "Week 39" in first and "Week 14" not in first  # newest first
    assert "Page 1 of 2" in first
    second = marketer_client.get(reverse("campaign-list"), {"page": 2}).content.decode()
    assert "Week 14" in second and "Week 0" in second and "Week 15" not in second
    assert "3/3" in second  # each campaign's counts, on every page


def test_a_failures_page_holds_its_own_50_failures_in_order_whatever_the_page(
    marketer_client, campaign, ready_recipes, django_assert_max_num_queries
):
    recipe = ready_recipes["social-ads-pack"]
    failed = add_tasks(campaign, recipe, 120, state="failed", error_code="timeout")
    add_tasks(campaign, recipe, 5, first=500)  # succeeded: never listed
    url = reverse("campaign-failures", args=[campaign.pk])
    first = count_queries(marketer_client, url)
    with django_assert_max_num_queries(first):
        last = marketer_client.get(url, {"page": 3})
    assert last.context["page"].object_list == failed[100:]
    assert "Page 3 of 3" in last.content.decode()
    assert marketer_client.get(url, {"page": 2}).context["page"].object_list == failed[50:100]

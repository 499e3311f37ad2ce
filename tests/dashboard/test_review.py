"""Review pages: an output beside its source or another version, approve/reject (POST only, team only),
renditions for the browser, re-running on a new recipe version and comparing the two versions."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from dashboard.models import Output, SourceImage, Task, Team
from dashboard.version_compare import definition_changes
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import publish_banner_text
from tests.dashboard.pages import find_all
from tests.jobs.images import encode, product_on_white


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def rerun(client, campaign, recipe, capture) -> None:
    with capture(execute=True):
        client.post(reverse("campaign-rerun", args=[campaign.pk, recipe.pk]))
    with capture(execute=True):
        run_burst_worker()


def test_compare_page_shows_the_output_beside_its_source_with_its_bytes(banner_campaign, marketer_client):
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="banner")
    page = marketer_client.get(reverse("output-compare", args=[output.pk])).content.decode()
    source_url = reverse("source-original", args=[output.task.source_id])
    assert f'src="{source_url}"' in page
    assert f'src="{reverse("output-download", args=[output.pk])}?inline=1"' in page
    assert f"({output.byte_size} bytes)" in page and "1200×628" in page
    # Every output of the image is one click away, as a picture.
    for sibling in output.task.outputs.all():
        assert reverse("output-thumbnail", args=[sibling.pk]) in page


def compared_window(page: str) -> list[float] | None:
    """The window the compare page cuts the source to (fractions of the source), if it cuts it."""
    frames = find_all(page, "div", class_="source-frame")
    return [float(v) for v in frames[0].attrs["data-window"].split(",")] if frames else None


def test_the_compare_page_cuts_the_source_to_the_part_the_output_was_made_from(
    banner_campaign, marketer_client
):
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="banner")
    # The banner is a 1200:628 strip of a 320×240 photo: all of its width, about 70% of its height.
    left, top, right, bottom = output.source_window
    assert (left, right) == pytest.approx((0.0, 1.0), abs=0.01)
    assert bottom - top == pytest.approx(320 * 628 / 1200 / 240, abs=0.01)
    page = marketer_client.get(reverse("output-compare", args=[output.pk])).content.decode()
    assert compared_window(page) == output.source_window
    assert "The original is cut to the part this output was made from" in page


def test_an_output_stored_before_windows_were_kept_has_its_window_traced_once(
    banner_campaign, marketer_client, monkeypatch
):
    task = Task.objects.get(source__display_name="bag.jpg")
    recorded = dict(task.outputs.values_list("name", "source_window"))
    task.outputs.update(source_window=None)
    output = task.outputs.get(name="banner-small")
    page = marketer_client.get(reverse("output-compare", args=[output.pk])).content.decode()
    assert compared_window(page) == pytest.approx(recorded["banner-small"], abs=0.005)
    # Every output of the task keeps its traced window: the next page needs no trace.
    for name, window in task.outputs.values_list("name", "source_window"):
        assert window == pytest.approx(recorded[name], abs=0.005), name
    monkeypatch.setattr("dashboard.source_windows.trace_windows", None)
    banner = task.outputs.get(name="banner")
    page = marketer_client.get(reverse("output-compare", args=[banner.pk])).content.decode()
    assert compared_window(page) == banner.source_window


def test_without_a_window_the_source_is_shown_whole_and_the_page_says_why(banner_campaign, marketer_client):
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="banner")
    Output.objects.filter(pk=output.pk).update(source_window=None)
    default_storage.delete(output.task.source.file.name)  # nothing left to trace it from
    page = marketer_client.get(reverse("output-compare", args=[output.pk])).content.decode()
    assert compared_window(page) is None
    assert "Where this output sits in the original is not known, so the original is shown whole." in page


def test_approving_and_rejecting_one_output_records_who_and_when(banner_campaign, marketer_client, marketer):
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="banner")
    url = reverse("output-review", args=[output.pk])
    response = marketer_client.post(url, {"decision": "approved"})
    assert response.url == reverse("output-compare", args=[output.pk])
    output.refresh_from_db()
    assert output.review == "approved" and output.reviewed_by == marketer and output.reviewed_at is not None
    marketer_client.post(url, {"decision": "rejected"})
    output.refresh_from_db()
    assert output.review == "rejected"
    marketer_client.post(url, {"decision": "pending"})
    output.refresh_from_db()
    assert output.review == "pending" and output.reviewed_by is None and output.reviewed_at is None
    assert Output.objects.exclude(pk=output.pk).filter(review="pending").count() == 7


def test_approve_all_outputs_of_an_image_in_one_post(banner_campaign, marketer_client):
    task = Task.objects.get(source__display_name="bag.jpg")
    next_url = banner_campaign.get_absolute_url() + "?page=1#source-2"
    response = marketer_client.post(
        reverse("task-review", args=[task.pk]), {"decision": "approved", "next": next_url}
    )
    assert response.url == next_url
    assert set(task.outputs.values_list("review", flat=True)) == {"approved"}
    assert set(Output.objects.exclude(task=task).values_list("review", flat=True)) == {"pending"}
    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    assert "✓ 4 approved" in page and "Approved only (4)" in page and "4 to review" in page


def bulk_buttons(html: str) -> set[str]:
    """The bulk review buttons a page offers for one image ("Approve all…", "Reject all")."""
    return {
        button.text.split(" ")[0] + " all"
        for button in find_all(html, "button", name="decision")
        if " all" in button.text
    }


def test_approve_all_is_offered_only_while_something_is_left_to_approve(banner_campaign, marketer_client):
    bag = Task.objects.get(source__display_name="bag.jpg")
    shoe = Task.objects.get(source__display_name="shoe.jpg")
    compare = reverse("output-compare", args=[bag.outputs.first().pk])
    assert bulk_buttons(marketer_client.get(compare).content.decode()) == {"Approve all", "Reject all"}

    marketer_client.post(reverse("task-review", args=[bag.pk]), {"decision": "approved"})
    assert bulk_buttons(marketer_client.get(compare).content.decode()) == {"Reject all"}
    gallery = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    bag_bar = gallery.split(f'id="review-task-{bag.pk}"')[1].split("</form>")[0]
    shoe_bar = gallery.split(f'id="review-task-{shoe.pk}"')[1].split("</form>")[0]
    assert "Approve all" not in bag_bar and "Reject all" in bag_bar
    assert "Approve all" in shoe_bar  # the other image still waits

    marketer_client.post(reverse("task-review", args=[bag.pk]), {"decision": "rejected"})
    assert bulk_buttons(marketer_client.get(compare).content.decode()) == {"Approve all"}


def test_review_changes_need_post_csrf_and_a_known_decision(banner_campaign, marketer, marketer_client):
    output = Output.objects.first()
    url = reverse("output-review", args=[output.pk])
    assert marketer_client.get(url, {"decision": "approved"}).status_code == 405
    assert marketer_client.post(url, {"decision": "maybe"}).status_code == 400
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(marketer)
    assert strict.post(url, {"decision": "approved"}).status_code == 403
    assert (
        strict.post(reverse("task-review", args=[output.task_id]), {"decision": "approved"}).status_code
        == 403
    )
    output.refresh_from_db()
    assert output.review == "pending"


def test_next_is_followed_only_within_the_site(banner_campaign, marketer_client):
    output = Output.objects.first()
    response = marketer_client.post(
        reverse("output-review", args=[output.pk]), {"decision": "approved", "next": "https://evil.example/"}
    )
    assert response.url == reverse("output-compare", args=[output.pk])


def test_next_to_review_goes_on_past_the_decided_outputs(banner_campaign, marketer_client):
    first, second, third = Output.objects.order_by("task_id", "pk")[:3]
    Output.objects.filter(pk=second.pk).record_review("approved", None)
    page = marketer_client.get(reverse("output-compare", args=[first.pk])).content.decode()
    assert f'href="{reverse("output-compare", args=[third.pk])}" id="next-to-review"' in page
    Output.objects.all().record_review("approved", None)
    page = marketer_client.get(reverse("output-compare", args=[first.pk])).content.decode()
    assert "Nothing else waits for review." in page


def test_the_source_is_served_as_stored_when_a_browser_can_show_it(banner_campaign, marketer_client):
    source = SourceImage.objects.get(display_name="shoe.jpg")
    response = marketer_client.get(reverse("source-original", args=[source.pk]))
    with default_storage.open(source.file.name, "rb") as handle:
        assert body(response) == handle.read()


def test_a_tiff_source_is_shown_through_a_full_size_webp_copy(marketer_client, campaign):
    tiff = encode(product_on_white(640, 480), "TIFF")
    stored = default_storage.save(f"sources/c{campaign.pk}/tiff.tif", ContentFile(tiff))
    source = SourceImage.objects.create(
        campaign=campaign, sha256="t" * 64, display_name="scan.tif", file=stored, width=640, height=480,
        format="TIFF", byte_size=len(tiff),
    )  # fmt: skip
    image = Image.open(io.BytesIO(body(marketer_client.get(reverse("source-original", args=[source.pk])))))
    assert image.format == "WEBP" and image.size == (640, 480)


def test_an_output_thumbnail_is_made_once_then_kept(banner_campaign, marketer_client):
    output = Output.objects.get(task__source__display_name="shoe.jpg", name="banner")
    url = reverse("output-thumbnail", args=[output.pk])
    image = Image.open(io.BytesIO(body(marketer_client.get(url))))
    assert image.format == "WEBP" and max(image.size) == 480
    assert default_storage.exists(output.thumbnail_key())
    modified = default_storage.get_modified_time(output.thumbnail_key())
    marketer_client.get(url)
    assert default_storage.get_modified_time(output.thumbnail_key()) == modified


def test_another_team_gets_404_from_every_review_page(banner_campaign, ready_recipes, django_user_model):
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    output = Output.objects.first()
    recipe = ready_recipes["sale-banner"]
    for url in [
        reverse("output-compare", args=[output.pk]),
        reverse("output-thumbnail", args=[output.pk]),
        reverse("source-original", args=[output.task.source_id]),
        reverse("version-compare", args=[banner_campaign.pk, recipe.pk]),
        reverse("campaign-rerun", args=[banner_campaign.pk, recipe.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    for url in [
        reverse("output-review", args=[output.pk]),
        reverse("task-review", args=[output.task_id]),
        reverse("campaign-rerun", args=[banner_campaign.pk, recipe.pk]),
    ]:
        assert client.post(url, {"decision": "approved"}).status_code == 404, url
    assert not Output.objects.filter(review="approved").exists()
    assert banner_campaign.tasks.count() == 2


def test_a_recipe_with_a_new_version_offers_a_rerun_that_confirms_first(
    banner_campaign, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    recipe = ready_recipes["sale-banner"]
    url = reverse("campaign-rerun", args=[banner_campaign.pk, recipe.pk])
    assert url not in marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    publish_banner_text(recipe, "30% OFF")
    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    assert "Sale banner has a new version." in page and url in page and "Re-run on v2" in page

    confirm = marketer_client.get(url).content.decode()
    assert "Re-run 2 images on Sale banner v2?" in confirm
    assert banner_campaign.tasks.count() == 2  # GET only asks

    rerun(marketer_client, banner_campaign, recipe, django_capture_on_commit_callbacks)
    by_version = {
        number: state
        for number, state in banner_campaign.tasks.values_list("recipe_version__number", "state").distinct()
    }
    assert banner_campaign.tasks.count() == 4 and by_version == {1: "succeeded", 2: "succeeded"}
    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    assert "has a new version" not in page
    assert reverse("version-compare", args=[banner_campaign.pk, recipe.pk]) in page
    assert "Re-run 0 images" in marketer_client.get(url).content.decode()


def test_after_a_rerun_each_tile_shows_the_newest_version_and_points_to_the_earlier_one(
    banner_campaign, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    recipe = ready_recipes["sale-banner"]
    publish_banner_text(recipe, "30% OFF")
    rerun(marketer_client, banner_campaign, recipe, django_capture_on_commit_callbacks)
    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    heads = [head.text for head in find_all(page, "div", class_="task-head")]
    assert heads == ["Sale banner v2 4 to review"] * 2, "one card per image: the newest version"
    compare = reverse("version-compare", args=[banner_campaign.pk, recipe.pk])
    assert [link.text for link in find_all(page, "a", href=compare)].count("1 earlier version: compare") == 2
    for output in Output.objects.filter(task__campaign=banner_campaign, task__recipe_version__number=2):
        assert find_all(page, "a", href=reverse("output-compare", args=[output.pk]))


def test_two_versions_are_compared_output_beside_output(
    banner_campaign, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    recipe = ready_recipes["sale-banner"]
    publish_banner_text(recipe, "30% OFF")
    rerun(marketer_client, banner_campaign, recipe, django_capture_on_commit_callbacks)
    page = marketer_client.get(
        reverse("version-compare", args=[banner_campaign.pk, recipe.pk])
    ).content.decode()
    assert "v1 and v2" in page
    assert "Step 2 (Text overlay): text 20% OFF → 30% OFF" in page
    for source in banner_campaign.sources.all():
        old = Output.objects.get(task__source=source, task__recipe_version__number=1, name="banner")
        new = Output.objects.get(task__source=source, task__recipe_version__number=2, name="banner")
        assert reverse("output-thumbnail", args=[old.pk]) in page
        assert reverse("output-thumbnail", args=[new.pk]) in page
        slider = f"{reverse('output-compare', args=[new.pk])}?against={old.pk}"
        assert slider in page
        # The slider then wipes between the two versions instead of the original.
        compare = marketer_client.get(slider).content.decode()
        assert f'src="{reverse("output-download", args=[old.pk])}?inline=1"' in compare
        assert reverse("source-original", args=[source.pk]) not in compare.split('class="compare-stage"')[1]


def test_a_campaign_with_one_version_says_there_is_nothing_to_compare_yet(
    banner_campaign, marketer_client, ready_recipes
):
    url = reverse("version-compare", args=[banner_campaign.pk, ready_recipes["sale-banner"].pk])
    assert "only v1 of Sale banner so far" in marketer_client.get(url).content.decode()
    assert (
        marketer_client.get(
            reverse("version-compare", args=[banner_campaign.pk, ready_recipes["ecommerce-pack"].pk])
        ).status_code
        == 404
    )


def test_definition_changes_are_described_in_words():
    before = {
        "steps": [{"operation": "enhance", "params": {"sharpen": 0.6}, "provider": None}],
        "outputs": [
            {"name": "a", "width": 100, "height": 100, "format": "jpeg"},
            {"name": "b", "width": 50, "height": 50, "format": "jpeg"},
        ],
    }
    after = {
        "steps": [
            {"operation": "enhance", "params": {"sharpen": 1.0}, "provider": "removebg"},
            {"operation": "canvas", "params": {}, "provider": None},
        ],
        "outputs": [
            {"name": "a", "width": 120, "height": 100, "format": "jpeg"},
            {"name": "c", "width": 10, "height": 10, "format": "png"},
        ],
    }
    assert definition_changes(before, after) == [
        "Step 1 (Enhance): sharpen 0.6 → 1.0",
        "Step 1 (Enhance): provider our workers → removebg",  # no such provider row: its slug
        "Step 2 added: Canvas",
        "Output a: width 100 → 120",
        "Output c added (10×10 png)",
        "Output b removed",
    ]


def publish_smaller_banner_quality(recipe):
    """An admin's edit that changes one output of the sale banner (banner-small's JPEG quality) and no other."""
    recipe.outputs.filter(name="banner-small").update(quality=60)
    return recipe.publish_version()


def test_a_new_versions_byte_identical_output_keeps_its_approval_and_a_changed_one_says_so(
    banner_campaign, marketer, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    """The report: "same 74,327-byte output, back to 'To review'" after a re-run on a new recipe version."""
    recipe = ready_recipes["sale-banner"]
    shoe_v1 = Task.objects.get(source__display_name="shoe.jpg")
    marketer_client.post(reverse("task-review", args=[shoe_v1.pk]), {"decision": "approved"})
    publish_smaller_banner_quality(recipe)
    rerun(marketer_client, banner_campaign, recipe, django_capture_on_commit_callbacks)

    shoe_v2 = Task.objects.get(source__display_name="shoe.jpg", recipe_version__number=2)
    before = {output.name: output for output in shoe_v1.outputs.all()}
    after = {output.name: output for output in shoe_v2.outputs.all()}
    for name in ["banner", "banner-webp", "banner-small-webp"]:
        assert after[name].byte_size == before[name].byte_size
        assert (after[name].review, after[name].reviewed_by) == ("approved", marketer), name
        assert after[name].sha256 == before[name].sha256
    changed = after["banner-small"]
    assert changed.sha256 != before["banner-small"].sha256
    assert changed.review == "pending" and changed.earlier_approved == before["banner-small"]
    bag_v2 = Task.objects.get(source__display_name="bag.jpg", recipe_version__number=2)
    assert set(bag_v2.outputs.values_list("review", flat=True)) == {"pending"}, "nothing of it was approved"

    review = marketer_client.get(reverse("output-compare", args=[changed.pk])).content.decode()
    notice = find_all(review, id="changed-since-approval")
    assert [element.text for element in notice] == ["Changed since you approved v1. Compare with v1"]
    assert f"{reverse('output-compare', args=[changed.pk])}?against={before['banner-small'].pk}" in review
    kept = marketer_client.get(reverse("output-compare", args=[after["banner"].pk])).content.decode()
    assert "Same bytes as the v1 you approved" in kept and not find_all(kept, id="changed-since-approval")

    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    tile = find_all(page, id=f"task-{shoe_v2.pk}")[0].text
    assert "✓ 3 approved" in tile and "1 changed since you approved v1" in tile and "1 to review" in tile
    assert "changed since" not in find_all(page, id=f"task-{bag_v2.pk}")[0].text


def test_an_output_stored_before_hashes_were_kept_is_hashed_when_first_compared(
    banner_campaign, marketer, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    shoe_v1 = Task.objects.get(source__display_name="shoe.jpg")
    for output in Output.objects.all():
        with default_storage.open(output.file.name, "rb") as handle:
            assert output.sha256 == hashlib.sha256(handle.read()).hexdigest(), "written with its file"
    marketer_client.post(reverse("task-review", args=[shoe_v1.pk]), {"decision": "approved"})
    Output.objects.update(sha256="")  # as rows written before the column existed
    publish_smaller_banner_quality(ready_recipes["sale-banner"])
    rerun(marketer_client, banner_campaign, ready_recipes["sale-banner"], django_capture_on_commit_callbacks)
    banner = Output.objects.get(task__source=shoe_v1.source, task__recipe_version__number=2, name="banner")
    assert banner.review == "approved"
    assert len(Output.objects.get(task=shoe_v1, name="banner").sha256) == 64

"""Review pages: an output beside its source or another version, approve/reject (POST only, team only),
renditions for the browser, re-running on a new recipe version and comparing the two versions."""

from __future__ import annotations

import io

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

"""A photo too small for some outputs: those are not made, the gallery and the ZIP's manifest say which and
why; a photo too small for every output fails with a reason and can be requeued."""

from __future__ import annotations

import pytest

from dashboard.exports import campaign_zip
from dashboard.models import Task
from dashboard.services import requeue_tasks
from tests.dashboard.conftest import screenshot
from tests.dashboard.pages import find_all
from tests.dashboard.test_exports import read_zip
from tests.jobs.images import jpeg, photo, product_on_white

BADGE = "2 outputs not made — photo too small"


@pytest.fixture
def small_photos(processed):
    """A 640×480 shot (the E-commerce pack's 2000×2000 zoom would enlarge its cut-out 5× or more) and a 24×18 one
    (too small for every output) through the E-commerce pack on a real RQ worker."""
    files = {"bottle.jpg": jpeg(product_on_white(640, 480, seed=1)), "speck.jpg": jpeg(photo(24, 18))}
    return processed("ecommerce-pack", files)


def test_the_outputs_a_small_photo_can_carry_are_made_and_the_zoom_is_not(small_photos):
    bottle = small_photos.tasks.get(source__display_name="bottle.jpg")
    assert bottle.state == "succeeded"
    made = {"thumbnail", "thumbnail-webp", "product", "product-webp"}
    assert set(bottle.outputs.values_list("name", flat=True)) == made
    zoom, zoom_webp = bottle.not_made_reasons()
    assert zoom.startswith("zoom 2000×2000 not made: it would show ")
    assert zoom_webp.startswith("zoom-webp 2000×2000 not made: it would show ")
    assert "or an Upscale step in the recipe" in zoom


def test_a_photo_too_small_for_every_output_fails_as_unsuitable_and_can_be_requeued(small_photos):
    speck = small_photos.tasks.get(source__display_name="speck.jpg")
    assert (speck.state, speck.error_code) == ("failed", "too_small")
    assert speck.error_message.startswith("The photo is too small for every output")
    assert not speck.outputs.exists()
    assert requeue_tasks(Task.objects.filter(pk=speck.pk)) == 1


def test_the_gallery_says_which_outputs_were_not_made_and_why(small_photos, marketer_client):
    page = marketer_client.get(small_photos.get_absolute_url()).content.decode()
    [badge] = [badge for badge in find_all(page, class_="badge") if badge.text == BADGE]
    assert badge.attrs["title"].startswith("zoom 2000×2000 not made: it would show ")
    assert "Photo does not suit the recipe: The photo is too small for every output" in page


def test_the_manifest_accounts_for_the_outputs_not_made(small_photos):
    names, rows = read_zip(campaign_zip(small_photos))
    assert {name.split("/")[1] for name in names} == {
        "thumbnail",
        "thumbnail-webp",
        "product",
        "product-webp",
    }
    by_output = {(row["source"], row["output"]): row for row in rows}
    zoom = by_output[("bottle.jpg", "zoom")]
    assert (zoom["path"], zoom["task_state"]) == ("", "succeeded")
    assert zoom["error"].startswith("zoom 2000×2000 not made")
    assert by_output[("speck.jpg", "")]["task_state"] == "failed"


@pytest.mark.browser
@pytest.mark.integration
def test_in_chromium_the_tile_shows_the_outputs_made_and_the_badge_says_why_the_zoom_is_not(
    small_photos, browser_page, live_server, marketer_client
):
    session = marketer_client.cookies["sessionid"].value
    browser_page.context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
    browser_page.set_viewport_size({"width": 1366, "height": 900})
    browser_page.goto(live_server.url + small_photos.get_absolute_url())
    tile = browser_page.locator(".tile", has_text="bottle.jpg")
    badge = tile.locator(".badge", has_text=BADGE)
    badge.scroll_into_view_if_needed()
    assert badge.is_visible()
    assert badge.get_attribute("title").startswith("zoom 2000×2000 not made: it would show ")
    pictures = tile.locator(".output img")
    assert pictures.count() == 4  # the thumbnails and product shots, not the zoom
    for n in range(4):
        pictures.nth(n).scroll_into_view_if_needed()
        browser_page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=pictures.nth(n).element_handle()
        )
    screenshot(browser_page, "not-made", clip=tile.bounding_box())

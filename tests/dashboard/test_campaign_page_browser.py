"""In Chromium: the campaign page is built around the work. A 14-image campaign fits two screens at 1366×900 and
nothing scrolls sideways at 390 px; notices sit at the top and their links lead where to act; the gallery's
outputs are pictures that load, its filters narrow it and survive paging; sections fold, and a live run keeps
its progress in view.

PIXELMILL_PAGE_IMAGES=200 (any count) also prints the page's height with that many processed images."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from dashboard.models import Campaign, Provider, ShareLink, Task, UrlImport, WebhookDelivery
from dashboard.views import campaigns
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import publish_banner_text, screenshot
from tests.factories import make_task, upload
from tests.jobs.images import jpeg, photo, product_on_white

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
LONG_URL = "https://cdn.example.com/" + "very-long-folder-name/" * 8 + "missing.jpg"


def process_images(client, campaign, recipes, count: int, capture) -> None:
    """`count` photos (one in twenty a busy street scene the cut-out refuses) through the e-commerce pack and
    the sale banner, then a new version of the banner: the page has results, failures and a notice."""
    files = []
    for n in range(count):
        if n % 20 == 1:
            files.append(upload(f"street-{n}.jpg", jpeg(photo(300, 220, seed=n))))
        else:
            shot = product_on_white(960, 720, seed=n, centre=(0.35 + (n % 5) * 0.07, 0.55))
            files.append(upload(f"product-{n:03d}.jpg", jpeg(shot)))
    for start in range(0, count, 50):
        client.post(reverse("campaign-upload", args=[campaign.pk]), {"files": files[start : start + 50]})
    ecommerce = recipes["ecommerce-pack"]
    ecommerce.steps.filter(operation="remove_background").update(params={"if_unsuitable": "refuse"})
    ecommerce.publish_version()
    with capture(execute=True):
        client.post(
            reverse("campaign-process", args=[campaign.pk]),
            {"recipes": [ecommerce.pk, recipes["sale-banner"].pk]},
        )
    with capture(execute=True):
        run_burst_worker()
    publish_banner_text(recipes["sale-banner"], "30% OFF")


@pytest.fixture
def fourteen(marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks):
    process_images(marketer_client, campaign, ready_recipes, 14, django_capture_on_commit_callbacks)
    assert campaign.tasks.filter(state=Task.State.FAILED).count() == 1
    return campaign


@pytest.fixture
def page(browser_page, live_server, marketer_client):
    """The browser, logged in as the marketer, with `page.open(path, **size)`."""
    browser_page.context.add_cookies(
        [{"name": "sessionid", "value": marketer_client.cookies["sessionid"].value, "url": live_server.url}]
    )

    def open_page(path: str, size: dict = DESKTOP) -> None:
        browser_page.set_viewport_size(size)
        browser_page.goto(live_server.url + path)
        browser_page.wait_for_load_state("networkidle")

    browser_page.open = open_page
    return browser_page


def refuse_url(campaign) -> None:
    UrlImport.objects.create(campaign=campaign, url=LONG_URL, state=UrlImport.State.FAILED,
                             error_message="The server answered 404: there is no image at this address.")  # fmt: skip


def document_size(page) -> dict:
    return page.evaluate(
        "({width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})"
    )


def top_of(page, selector: str) -> float:
    return page.evaluate(f"document.querySelector({selector!r}).getBoundingClientRect().top + scrollY")


def pictures_loaded(page, selector: str) -> list[bool]:
    """Each picture, scrolled into view (they load lazily), has been decoded."""
    pictures = page.locator(selector)
    for n in range(pictures.count()):
        pictures.nth(n).scroll_into_view_if_needed()
    page.wait_for_load_state("networkidle")
    return pictures.evaluate_all("all => all.map(img => img.complete && img.naturalWidth > 0)")


def test_fourteen_images_fit_two_screens_and_a_phone_never_scrolls_sideways(page, fourteen, marketer):
    # What else the page can hold: a refused URL, a prompt form, a webhook with deliveries, a share link.
    Provider.objects.create(name="fal", slug="fal", kind="fal", base_url="https://queue.fal.run")
    refuse_url(fourteen)
    Campaign.objects.filter(pk=fourteen.pk).update(webhook_url="https://hooks.example.com/pixelmill")
    WebhookDelivery.objects.create(campaign=fourteen, run_number=1, url="https://hooks.example.com/pixelmill",
                                   payload={}, last_error="Connection refused by hooks.example.com " * 3)  # fmt: skip
    ShareLink.issue(fourteen, marketer, days=7, label="Agency")

    page.open(fourteen.get_absolute_url())
    height = document_size(page)["height"]
    assert height <= 2 * DESKTOP["height"], f"{height} px tall"
    pictures_loaded(page, ".gallery img")
    page.evaluate("scrollTo(0, 0)")
    screenshot(page, "campaign", full_page=True)
    page.screenshot(path="/tmp/campaign-1366.png", full_page=True)

    page.open(fourteen.get_absolute_url(), PHONE)
    assert document_size(page)["width"] <= PHONE["width"]
    page.screenshot(path="/tmp/campaign-390.png", full_page=True)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert document_size(page)["width"] <= PHONE["width"], "with every section and reason open"
    page.screenshot(path="/tmp/campaign-390-open.png", full_page=True)


def test_notices_sit_at_the_top_and_lead_where_to_act(page, fourteen, ready_recipes):
    banner = ready_recipes["sale-banner"]
    Campaign.pause_remote(fourteen.pk, code="budget_reached", reason="The budget cap of 0.40 USD is reached.")
    refuse_url(fourteen)
    page.open(fourteen.get_absolute_url())

    # Progress, then each notice on one line, all in the first screen, above every section.
    # New version, failures, refused URL, what the last upload did, and outputs to check (the 300×220 photos'
    # banners are enlarged 4×).
    notices = page.locator("#notices > li")
    assert notices.count() == 5
    assert top_of(page, "#progress") < top_of(page, "#notices") < top_of(page, "#add-images")
    assert top_of(page, "#notices > li:last-child") < DESKTOP["height"] * 0.6
    for n in range(notices.count()):
        assert notices.nth(n).bounding_box()["height"] < 40, notices.nth(n).inner_text()
    paused = page.locator("#paused-banner")
    assert "Budget cap reached: remote work is paused." in paused.inner_text()
    assert (
        paused.bounding_box()["y"] < DESKTOP["height"] / 2
        and paused.locator("text=Raise cap and resume").count()
    )

    page.click("#failure-causes >> text=Photo does not suit the recipe (1)")
    page.wait_for_selector("h1:has-text('Failures: Photo does not suit the recipe')")
    assert "street-1.jpg" in page.inner_text("table.failures")
    assert "no_plain_background" not in page.inner_text("main")
    page.go_back()
    page.click(f"#recipe-update-{banner.pk} >> text=Re-run on v2")
    page.wait_for_selector("h1:has-text('Re-run 14 images on Sale banner v2?')")
    page.go_back()
    page.click("#refused-notice >> text=See why")
    assert page.locator("#add-images").get_attribute("open") is not None
    assert page.locator("#refused-urls").is_visible()
    assert page.inner_text("#upload-notice").startswith("Last upload: Added 14 image(s).")
    page.click("#upload-notice >> text=Dismiss")
    page.wait_for_selector("#notices")
    assert page.locator("#upload-notice").count() == 0 and page.locator("#notices > li").count() == 4


def test_gallery_outputs_are_pictures_that_load_and_filters_narrow_it_and_survive_paging(
    page, fourteen, ready_recipes, monkeypatch
):
    ecommerce = ready_recipes["ecommerce-pack"]
    page.open(fourteen.get_absolute_url())
    outputs = page.locator(".gallery .output img")
    assert outputs.count() == 13 * 6 + 14 * 4  # one image failed the e-commerce pack
    assert all(pictures_loaded(page, ".gallery .output img"))
    assert all(pictures_loaded(page, ".gallery .source-picture img"))
    widths = outputs.evaluate_all("all => all.map(img => img.naturalWidth)")
    assert max(widths) <= 160

    # Failed results: one line with the cause; the whole reason opens under it.
    reason = page.locator(".short-reason")
    assert reason.count() == 1 and reason.locator("summary").bounding_box()["height"] < 24
    assert (
        reason.locator("summary")
        .inner_text()
        .startswith("Photo does not suit the recipe: Background removal")
    )
    reason.locator("summary").click()
    assert "backdrop" in reason.locator("p").first.inner_text()

    # Filters apply as they change, on the server, and stay through paging.
    monkeypatch.setattr(campaigns, "GALLERY_PAGE_SIZE", 5)
    page.select_option("select[name=state]", "failed")
    page.wait_for_url(lambda url: "state=failed" in url)
    assert page.url.endswith("?state=failed#gallery"), "filters left at Any are not in the address"
    assert page.locator(".tile").count() == 1 and page.locator(".task").count() == 1
    page.select_option("select[name=state]", "ready")
    page.wait_for_url(lambda url: "state=ready" in url)
    page.select_option("select[name=recipe]", str(ecommerce.pk))
    page.wait_for_url(lambda url: f"recipe={ecommerce.pk}" in url)
    assert page.inner_text("#gallery-count").startswith("13 of 14 images")
    assert page.locator(".tile").count() == 5
    page.click(".pager >> text=Next →")
    page.wait_for_url(lambda url: "page=2" in url)
    assert "state=ready" in page.url and f"recipe={ecommerce.pk}" in page.url
    assert page.input_value("select[name=state]") == "ready"
    assert page.input_value("select[name=recipe]") == str(ecommerce.pk)
    assert page.locator(".tile").count() == 5
    assert set(page.locator(".task-head .recipe-name").all_inner_texts()) == {"E-commerce pack v2"}
    page.click(".pager >> text=Next →")
    page.wait_for_url(lambda url: "page=3" in url)
    assert page.locator(".tile").count() == 3


def test_sections_fold_and_a_live_run_keeps_its_progress_in_view(page, campaign, ready_recipes):
    page.open(campaign.get_absolute_url())
    add_images, gallery = page.locator("#add-images"), page.locator("#gallery")
    assert page.locator("#dropzone").is_visible() and gallery.get_attribute("open") is None
    page.click("#add-images > summary")
    assert not page.locator("#dropzone").is_visible() and add_images.get_attribute("open") is None
    page.click("#process > summary")
    assert page.locator("#process-button").is_visible()
    page.click("#deliver > summary")
    assert (
        page.locator("#share input[name=label]").is_visible() and page.locator("#webhook-form").is_visible()
    )

    # A run going on: the panel polls and stays at the top of the window while the page scrolls.
    for n in range(30):
        make_task(campaign, ready_recipes["sale-banner"], sha=f"{n:064d}", state=Task.State.QUEUED)
    page.open(campaign.get_absolute_url())
    assert page.locator("#progress").get_attribute("hx-get")
    page.evaluate("scrollTo(0, document.documentElement.scrollHeight)")
    assert abs(page.locator("#progress").bounding_box()["y"]) < 1


@pytest.mark.skipif(
    not os.environ.get("PIXELMILL_PAGE_IMAGES"), reason="set PIXELMILL_PAGE_IMAGES to measure"
)
def test_measure_the_page_with_many_images(
    page, marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    count = int(os.environ["PIXELMILL_PAGE_IMAGES"])
    process_images(marketer_client, campaign, ready_recipes, count, django_capture_on_commit_callbacks)
    page.open(campaign.get_absolute_url())
    desktop = document_size(page)
    page.open(campaign.get_absolute_url(), PHONE)
    print(
        f"\n{count} images: {desktop['height']} px tall at 1366×900; {document_size(page)['width']} px wide at 390"
    )

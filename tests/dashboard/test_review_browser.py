"""In Chromium: an admin previews an unsaved recipe; a marketer compares outputs with their sources, approves
and rejects them, downloads and shares the approved ones; a campaign re-runs on a new recipe version and the
two versions are compared, the re-run joining the run still going and keeping the approvals of unchanged
pictures; a share page pages through every approved picture. With PIXELMILL_SCREENSHOTS=1 these runs refresh
the README tour's pictures."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from dashboard.models import Output, Recipe, ShareLink
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import process_uploads, publish_banner_text, screenshot
from tests.factories import make_approved_outputs
from tests.jobs.images import jpeg, product_on_white

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form [type=submit]")


def photos(tmp_path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        path = tmp_path / f"product-{n}.jpg"
        path.write_bytes(jpeg(product_on_white(640, 480, seed=n, centre=(0.4 + 0.1 * n, 0.55))))
        paths.append(str(path))
    return paths


def run_one_job() -> None:
    import django_rq
    from rq import SimpleWorker

    queues = [django_rq.get_queue("control"), django_rq.get_queue("default")]
    SimpleWorker(queues, connection=queues[0].connection).work(
        burst=True, max_jobs=1, logging_level="WARNING"
    )


def start_campaign(
    page,
    live_server,
    tmp_path,
    name: str,
    recipe: Recipe,
    count: int,
    *,
    picture_progress: bool = False,
    finish: bool = True,
) -> None:
    """As the logged-in marketer: create the campaign, upload, Process, and (`finish`) let a burst worker do
    the work."""
    page.goto(live_server.url)
    page.fill("input[name=name]", name)
    page.click("text=Create campaign")
    page.wait_for_selector(f"h1:has-text('{name}')")
    page.set_input_files("#file-input", photos(tmp_path, count))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(f"text=Added {count} image(s).")
    page.check(f"input[name=recipes][value='{recipe.pk}']")
    page.click("#process-button")
    page.wait_for_selector(f"text=Processing {count} task(s).")
    if not finish:
        return
    if picture_progress:
        # One task done, the rest waiting: the live panel catches up on its own.
        run_one_job()
        page.wait_for_selector(f"#progress[data-percent='{100 // count}']")
        screenshot(page, "progress")
    run_burst_worker()
    page.reload()
    page.wait_for_selector("#progress[data-finished=true]")


def zip_names(download, tmp_path, name: str) -> set[str]:
    saved = tmp_path / name
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        return set(archive.namelist()) - {"manifest.csv"}


def picture_loaded(locator) -> bool:
    """The picture arrived and decoded (waiting for it while it loads); False if it is broken."""
    return locator.evaluate(
        """img => img.complete ? img.naturalWidth > 0 : new Promise(done => {
            img.addEventListener("load", () => done(img.naturalWidth > 0));
            img.addEventListener("error", () => done(false));
        })"""
    )


def test_an_admin_previews_every_output_of_an_unsaved_recipe(
    browser_page, live_server, ready_recipes, django_user_model, tmp_path
):
    page = browser_page
    django_user_model.objects.create_superuser("ada", password="pw-ada-123")
    recipe = ready_recipes["sale-banner"]
    log_in(
        page,
        f"{live_server.url}/admin/login/?next=/admin/dashboard/recipe/{recipe.pk}/change/",
        "ada",
        "pw-ada-123",
    )
    page.wait_for_selector("text=Preview before saving")

    # Change the badge text without saving, then preview on the bundled sample.
    page.fill("textarea[name='steps-1-params']", '{"text": "30% OFF", "position": "top-left"}')
    page.select_option("#preview-sample", "bundled-bottle")
    page.click("#preview-button")
    cards = page.locator(".preview-card.output")
    cards.first.wait_for()
    assert cards.count() == 4
    banner = page.locator(".preview-card.output[data-output=banner]")
    assert "1200×628 JPEG" in banner.inner_text()
    assert " bytes" in banner.locator(".bytes").inner_text()
    assert all(picture_loaded(card.locator("img")) for card in cards.all())
    assert "Blue bottle on a studio backdrop" in page.locator(".preview-summary").inner_text()
    screenshot(page.locator("#recipe-preview"), "recipe-preview")

    # Full size: the lightbox shows the output at its own pixels.
    banner.locator("img").click()
    full = page.locator("#lightbox[open] img")
    full.wait_for()
    assert full.evaluate("img => img.naturalWidth") == 1200
    page.keyboard.press("Escape")

    # An uploaded sample replaces the list's choice.
    upload = tmp_path / "my-shot.jpg"
    upload.write_bytes(jpeg(product_on_white(520, 400, seed=7)))
    page.set_input_files("#preview-file", str(upload))
    page.click("#preview-button")
    page.wait_for_selector(".preview-summary:has-text('my-shot.jpg')")
    assert page.locator(".preview-card.output").count() == 4

    recipe.refresh_from_db()
    assert recipe.version == 1 and recipe.steps.get(operation="text_overlay").params["text"] == "20% OFF"


def test_a_marketer_compares_approves_downloads_and_shares_the_approved_images(
    browser_page, live_server, marketer, ready_recipes, redis_conn, tmp_path
):
    page = browser_page
    log_in(page, live_server.url, "maria", "pw-maria-123")
    start_campaign(
        page, live_server, tmp_path, "Summer launch", ready_recipes["sale-banner"], 3, picture_progress=True
    )
    assert page.locator(".badge.to-review", has_text="4 to review").count() == 3

    # Before and after: the wipe moves where the marketer clicks; side by side shows both whole.
    first_tile = page.locator(".tile").first
    first_tile.locator("text=Review →").click()
    page.wait_for_selector(".compare-stage")
    stage = page.locator(".compare-stage")
    assert picture_loaded(page.locator(".compare-before img")) and picture_loaded(
        page.locator(".compare-after img")
    )
    box = stage.bounding_box()
    page.locator(".compare-range").click(position={"x": box["width"] * 0.45, "y": box["height"] / 2})
    split = float(stage.evaluate("el => el.style.getPropertyValue('--split')").rstrip("%"))
    assert 40 <= split <= 50
    screenshot(page, "compare")
    page.click("[data-compare-mode=side]")
    before_box = page.locator(".compare-before").bounding_box()
    after_box = page.locator(".compare-after").bounding_box()
    assert before_box["x"] + before_box["width"] <= after_box["x"]

    page.click("#full-size-output")
    full = page.locator("#lightbox[open] img")
    full.wait_for()
    assert full.evaluate("img => img.naturalWidth") == 1200
    page.keyboard.press("Escape")

    # Approve this banner, reject the small one, approve every output of the second image.
    page.click("text=✓ Approve")
    page.wait_for_selector("text=Approved banner of product-0.jpg.")
    assert page.inner_text("#review-state") == "Approved"
    page.locator(".strip-item", has_text="banner-small").first.click()
    page.click("text=✕ Reject")
    page.wait_for_selector("text=Rejected banner-small of product-0.jpg.")
    page.click(".crumbs >> text=Summer launch")
    page.locator(".tile").nth(1).locator("button", has_text="Approve all").click()
    page.wait_for_selector("text=Approved all 4 outputs of product-1.jpg (Sale banner v1).")
    assert page.locator(".tile").nth(1).locator(".badge.approved").inner_text() == "✓ 4 approved"
    screenshot(page.locator(".gallery"), "review")

    with page.expect_download() as download:
        page.click("#download-approved")
    names = zip_names(download.value, tmp_path, "approved.zip")
    assert names == {"sale-banner/banner/product-0.jpg"} | {
        f"sale-banner/{name}/product-1.{ext}"
        for name, ext in [
            ("banner", "jpg"),
            ("banner-webp", "webp"),
            ("banner-small", "jpg"),
            ("banner-small-webp", "webp"),
        ]
    }

    # Share: someone without an account sees the five approved images and downloads them.
    page.fill("#share input[name=label]", "Agency")
    page.select_option("#share select[name=days]", "7")
    page.click("text=Create share link")
    page.wait_for_selector("text=Share link created.")
    link = ShareLink.objects.get()
    address = page.input_value(f"#share-url-{link.pk}")
    assert address == f"{live_server.url}{link.get_absolute_url()}"

    stranger = page.context.browser.new_context(accept_downloads=True).new_page()
    response = stranger.goto(address)
    assert response.status == 200 and "/accounts/login/" not in stranger.url
    stranger.wait_for_selector("text=Download 5 images (ZIP)")
    thumbnails = stranger.locator(".gallery.shared img")
    assert thumbnails.count() == 5
    thumbnails.last.scroll_into_view_if_needed()
    stranger.wait_for_function(
        "() => [...document.querySelectorAll('.gallery.shared img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(stranger, "share")
    with stranger.expect_download() as download:
        stranger.click("#shared-download")
    assert zip_names(download.value, tmp_path, "shared.zip") == names

    # Revoke, after a confirmation: the stranger's next visit is refused.
    page.locator(f"#share-link-{link.pk} >> text=Revoke").click()
    page.click("text=Yes, revoke")
    page.wait_for_selector("text=Share link revoked")
    assert stranger.goto(address).status == 410
    assert "This link no longer works" in stranger.inner_text("h1")
    assert Output.objects.filter(review="approved").count() == 5


def stage_picture(page, split: int) -> np.ndarray:
    """The comparison stage as the marketer sees it with the handle at `split` percent (captions hidden)."""
    page.locator(".compare-range").evaluate(
        "(range, value) => { range.value = value; range.dispatchEvent(new Event('input')); }", split
    )
    shot = page.locator(".compare-stage").screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=float)


def test_the_wipe_lines_the_original_up_with_an_output_cut_from_it(
    browser_page, live_server, marketer, marketer_client, campaign, ready_recipes, redis_conn,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    photo = product_on_white(640, 480, seed=3, centre=(0.35, 0.55))
    process_uploads(
        marketer_client, campaign, [ready_recipes["social-ads-pack"]], {"bottle.jpg": jpeg(photo)},
        django_capture_on_commit_callbacks,
    )  # fmt: skip
    page = browser_page
    log_in(page, live_server.url, "maria", "pw-maria-123")
    for name in ("instagram-story", "display-728x90"):
        output = Output.objects.get(name=name)
        page.goto(f"{live_server.url}/outputs/{output.pk}/compare/")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.compare-stage img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        # Through the CSSOM: the Content-Security-Policy refuses a <style> element added to the page.
        page.evaluate(
            """() => document.querySelectorAll(".compare-stage figcaption, .compare-handle")
                .forEach(element => element.style.setProperty("display", "none", "important"))"""
        )
        # The source's picture is placed so the output's window covers the stage exactly.
        stage = page.locator(".compare-stage").bounding_box()
        source = page.locator(".compare-before img").bounding_box()
        left, top, right, bottom = output.source_window
        assert stage["x"] == pytest.approx(source["x"] + left * source["width"], abs=1.5)
        assert stage["y"] == pytest.approx(source["y"] + top * source["height"], abs=1.5)
        assert stage["x"] + stage["width"] == pytest.approx(source["x"] + right * source["width"], abs=1.5)
        assert stage["y"] + stage["height"] == pytest.approx(source["y"] + bottom * source["height"], abs=1.5)
        # And what the eye checks: wiping from all-original to all-output moves nothing.
        original, rendered = stage_picture(page, 100), stage_picture(page, 0)
        assert np.abs(original - rendered).mean() < 6, name
        if name == "instagram-story":
            page.screenshot(path=f"/tmp/pixelmill-compare-{name}.png", full_page=True)
            page.click("[data-compare-mode=side]")
            window = page.locator(".source-window").bounding_box()
            whole = page.locator(".compare-before img").bounding_box()
            assert window["width"] == pytest.approx((right - left) * whole["width"], abs=1.5)
            assert window["x"] == pytest.approx(whole["x"] + left * whole["width"], abs=1.5)
            page.screenshot(path=f"/tmp/pixelmill-compare-{name}-side.png", full_page=True)


def test_a_campaign_reruns_on_a_new_recipe_version_and_the_versions_are_compared(
    browser_page, live_server, marketer, ready_recipes, redis_conn, django_user_model, tmp_path
):
    page = browser_page
    recipe = ready_recipes["sale-banner"]
    log_in(page, live_server.url, "maria", "pw-maria-123")
    start_campaign(page, live_server, tmp_path, "Autumn sale", recipe, 2)

    # An admin saves a new version of the recipe in the admin, in another browser.
    django_user_model.objects.create_superuser("ada", password="pw-ada-123")
    admin = page.context.browser.new_context().new_page()
    log_in(
        admin,
        f"{live_server.url}/admin/login/?next=/admin/dashboard/recipe/{recipe.pk}/change/",
        "ada",
        "pw-ada-123",
    )
    admin.fill("textarea[name='steps-1-params']", '{"text": "30% OFF", "position": "top-left"}')
    admin.click("input[name=_save]")
    admin.wait_for_selector("text=Saved as version 2")

    page.reload()
    banner = page.locator(f"#recipe-update-{recipe.pk}")
    assert "Sale banner has a new version." in banner.inner_text()
    banner.locator("text=Re-run on v2").click()
    page.wait_for_selector("h1:has-text('Re-run 2 images on Sale banner v2?')")
    page.click("text=Yes, re-run")
    page.wait_for_selector("text=Re-running 2 images on Sale banner v2.")
    run_burst_worker()
    page.reload()
    page.wait_for_selector("#progress[data-finished=true]")
    assert page.locator(".task-head", has_text="v2").count() == 2

    page.locator(f"#recipe-update-{recipe.pk} >> text=Compare versions").click()
    page.wait_for_selector("h1:has-text('Sale banner: v1 and v2')")
    assert "text 20% OFF → 30% OFF" in page.inner_text(".changes")
    assert page.locator(".version-row").count() == 2
    assert page.locator(".pair").count() == 8
    cells = page.locator(".version-row").first.locator(".version-cell img")
    assert cells.count() == 8
    cells.last.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.version-row:first-of-type .version-cell img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "versions")

    page.locator(".pair").first.locator("text=Compare with the slider →").click()
    page.wait_for_selector(".compare-before figcaption:has-text('v1')")
    assert "v2" in page.inner_text(".compare-after figcaption")
    assert picture_loaded(page.locator(".compare-before img"))


def rerun_on_new_version(page, recipe: Recipe, count: int) -> None:
    """On the campaign page: the recipe-update banner's Re-run, confirmed."""
    page.reload()
    page.locator(f"#recipe-update-{recipe.pk} >> text=Re-run on v{recipe.version}").click()
    page.click("text=Yes, re-run")
    images = f"{count} image{'s' if count != 1 else ''}"
    page.wait_for_selector(f"text=Re-running {images} on {recipe.name} v{recipe.version}.")


# Every total the live progress panel shows, recorded as htmx swaps the panel in.
RECORD_TOTALS = """() => {
  window.seenTotals = [];
  new MutationObserver(() => {
    const panel = document.querySelector('#progress');
    if (panel) window.seenTotals.push(panel.dataset.total);
  }).observe(document.body, {childList: true, subtree: true});
}"""


def test_a_rerun_during_a_run_joins_it_and_the_polled_total_never_moves(
    browser_page, live_server, marketer, ready_recipes, redis_conn, tmp_path
):
    """The report: during a re-run the panel's total shrank 20 → 19 → 18 → 15 while the percentage rose."""
    page = browser_page
    recipe = ready_recipes["sale-banner"]
    log_in(page, live_server.url, "maria", "pw-maria-123")
    start_campaign(page, live_server, tmp_path, "Winter sale", recipe, 4, finish=False)
    run_one_job()
    run_one_job()
    page.wait_for_selector("#progress[data-percent='50']")

    publish_banner_text(recipe, "30% OFF")  # an admin's new version while two images still wait
    rerun_on_new_version(page, recipe, 4)
    panel = page.locator("#progress")
    assert (panel.get_attribute("data-total"), panel.get_attribute("data-percent")) == ("8", "25")
    assert "8 tasks" in panel.inner_text()

    page.evaluate(RECORD_TOTALS)
    for done in range(3, 8):  # the two older tasks first, then the re-run's, while the page polls
        run_one_job()
        page.wait_for_selector(f"#progress[data-percent='{100 * done // 8}']")
    seen = page.evaluate("window.seenTotals")
    assert len(seen) >= 5 and set(seen) == {"8"}
    run_one_job()
    page.wait_for_selector("#progress[data-finished=true]")  # the panel reloads the page when done
    assert page.get_attribute("#progress", "data-total") == "8"
    assert page.inner_text("#progress .percent") == "100%"


def test_an_identical_rerender_keeps_its_approval_and_a_changed_one_says_so(
    browser_page, live_server, marketer, ready_recipes, redis_conn, tmp_path
):
    """The report: "same 74,327-byte output, back to 'To review'"."""
    page = browser_page
    recipe = ready_recipes["sale-banner"]
    log_in(page, live_server.url, "maria", "pw-maria-123")
    start_campaign(page, live_server, tmp_path, "Spring looks", recipe, 1)
    page.locator(".tile").first.locator("button", has_text="Approve all").click()
    page.wait_for_selector("text=Approved all 4 outputs of product-0.jpg (Sale banner v1).")

    # An admin lowers one output's quality: the other three render to the same bytes in v2.
    recipe.outputs.filter(name="banner-small").update(quality=60)
    recipe.publish_version()
    rerun_on_new_version(page, recipe, 1)
    run_burst_worker()
    page.reload()
    page.wait_for_selector("#progress[data-finished=true]")
    tile = page.locator(".tile").first
    assert "v2" in tile.locator(".task-head").inner_text()
    assert tile.locator(".badge.approved").inner_text() == "✓ 3 approved"
    assert tile.locator(".badge.changed").inner_text() == "1 changed since you approved v1"

    tile.locator("text=Review →").click()
    page.wait_for_selector("#kept-approval")
    assert "Same bytes as the v1 you approved" in page.inner_text("#kept-approval")
    assert page.inner_text("#review-state") == "Approved"
    page.click("#next-to-review")
    notice = page.locator("#changed-since-approval")
    notice.wait_for()
    assert notice.inner_text().startswith("Changed since you approved v1.")
    assert page.inner_text("#review-state") == "To review"
    notice.locator("text=Compare with v1").click()
    page.wait_for_selector(".compare-before figcaption:has-text('v1')")
    assert picture_loaded(page.locator(".compare-before img"))


def test_the_share_page_pages_through_every_approved_picture(
    browser_page, live_server, campaign, marketer, ready_recipes, tmp_path
):
    """The report: 24 of 43 approved shown, and no way to see the rest."""
    approved = make_approved_outputs(campaign, ready_recipes["sale-banner"], 43, reviewer=marketer)
    link = ShareLink.issue(campaign, marketer, days=7, label="Agency")
    page = browser_page  # someone without an account
    page.goto(f"{live_server.url}{link.get_absolute_url()}")

    shown: list[str] = []
    for number, count in [(1, 24), (2, 19)]:
        page.wait_for_selector(f".pager >> text=Page {number} of 2")
        pictures = page.locator(".gallery.shared img")
        assert pictures.count() == count
        pictures.last.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.gallery.shared img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        shown += [picture.get_attribute("alt") for picture in pictures.all()]
        assert page.inner_text("#shared-download") == "Download 43 images (ZIP)"
        if number == 1:
            page.click(".pager >> text=Next →")
    assert sorted(shown) == sorted(f"square of {output.task.source.display_name}" for output in approved)

    with page.expect_download() as download:
        page.click("#shared-download")
    assert len(zip_names(download.value, tmp_path, "shared.zip")) == 43
    page.click(".pager >> text=← Previous")
    page.wait_for_selector(".pager >> text=Page 1 of 2")

"""In Chromium: nineteen files with one empty among them come back as eighteen added and one refused by name,
and those results stay on the campaign page across reloads until the marketer dismisses them."""

from __future__ import annotations

import pytest

from tests.jobs.images import jpeg, photo

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def open_campaign(page, live_server, campaign) -> None:
    """Log in as the marketer on the way to the campaign's page."""
    page.goto(live_server.url + campaign.get_absolute_url())
    page.fill("input[name=username]", "maria")
    page.fill("input[name=password]", "pw-maria-123")
    page.click("button[type=submit]")
    page.wait_for_selector(f"h1:has-text('{campaign.name}')")


def test_an_empty_file_among_nineteen_is_refused_by_name_and_the_results_stay_until_dismissed(
    browser_page, live_server, marketer, campaign, tmp_path
):
    page = browser_page
    paths = []
    for n in range(18):
        path = tmp_path / f"photo-{n:02}.jpg"
        path.write_bytes(jpeg(photo(64, 48, seed=n)))
        paths.append(str(path))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    paths.insert(9, str(empty))

    open_campaign(page, live_server, campaign)

    page.set_input_files("#file-input", paths)
    page.click("#upload-form button[type=submit]")
    results = page.locator("#upload-results")
    results.wait_for()
    text = results.inner_text()
    assert "Added 18 image(s)." in text and "1 refused" in text
    assert "empty.jpg" in page.locator("#upload-results .refused").inner_text()
    assert "is empty (0 bytes)" in text
    assert campaign.sources.count() == 18
    assert page.locator(".gallery .tile").count() == 18

    page.reload()
    assert "empty.jpg" in page.locator("#upload-results .refused").inner_text()

    page.click("#upload-results button:has-text('Dismiss')")
    page.wait_for_selector("h1")
    assert page.locator("#upload-results").count() == 0
    page.reload()
    assert page.locator("#upload-results").count() == 0


def test_an_upload_refused_as_a_whole_says_why_beside_the_form_instead_of_reloading(
    browser_page, live_server, marketer, campaign, tmp_path, settings
):
    settings.PIXELMILL_MAX_REQUEST_BYTES = 2_000
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(photo(400, 300, seed=1)))
    page = browser_page
    open_campaign(page, live_server, campaign)

    page.set_input_files("#file-input", [str(path)])
    page.click("#upload-form button[type=submit]")
    problem = page.locator("#upload-form .upload-problem")
    problem.wait_for()
    assert "one upload may carry at most 2.0\xa0KB" in problem.inner_text()
    assert page.locator("#upload-results").count() == 0 and campaign.sources.count() == 0

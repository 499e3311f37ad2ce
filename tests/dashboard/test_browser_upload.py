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


def test_an_upload_over_the_request_limit_goes_in_batches_whose_results_add_up(
    browser_page, live_server, marketer, campaign, tmp_path, settings
):
    """Before, the drop zone sent every file in one request and a set over the limit got one 413 for all."""
    settings.PIXELMILL_MAX_REQUEST_BYTES = 160_000  # a batch then carries at most about 86 KB
    paths, sizes = [], []
    for n in range(8):
        path = tmp_path / f"shot-{n}.jpg"
        sizes.append(path.write_bytes(jpeg(photo(240, 180, seed=n), quality=95)))
        paths.append(str(path))
    assert min(sizes) > 20_000 and sum(sizes) > 160_000, (
        sizes
    )  # the set is over the limit, each file well under
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG" + bytes(170_000))  # over the limit on its own: named, not sent
    paths.insert(3, str(huge))
    page = browser_page
    posts: list[int] = []
    page.on("request", lambda r: posts.append(len(r.post_data_buffer or b"")) if r.method == "POST" else None)
    open_campaign(page, live_server, campaign)

    page.set_input_files("#file-input", paths)
    page.click("#upload-form button[type=submit]")
    results = page.locator("#upload-results")
    results.wait_for()
    assert campaign.sources.count() == 8
    assert len(posts) >= 3 and max(posts) < 160_000, posts
    assert "Added 8 image(s)." in results.inner_text()
    refused = page.locator("#upload-results .refused").inner_text()
    assert "huge.png" in refused and "larger than the 156.2\xa0KB one upload may carry" in refused


def test_a_lone_file_over_the_request_limit_is_listed_as_refused_and_nothing_is_sent(
    browser_page, live_server, marketer, campaign, tmp_path, settings
):
    settings.PIXELMILL_MAX_REQUEST_BYTES = 2_000
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg(photo(400, 300, seed=1)))
    page = browser_page
    open_campaign(page, live_server, campaign)

    page.set_input_files("#file-input", [str(path)])
    page.click("#upload-form button[type=submit]")
    page.locator("#upload-results").wait_for()
    refused = page.locator("#upload-results .refused").inner_text()
    assert "big.jpg" in refused and "larger than the 2.0\xa0KB one upload may carry" in refused
    assert campaign.sources.count() == 0

"""Dashboard fixtures: Chromium through Playwright, and campaigns processed by a real RQ worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.urls import reverse

from tests.conftest import run_burst_worker
from tests.factories import upload
from tests.jobs.images import jpeg, product_on_white

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def browser_page(monkeypatch):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # pragma: no cover - depends on the machine
        pytest.skip(f"BROWSER TESTS SKIPPED: playwright is not importable ({error})")
    if not Path(CHROMIUM).exists():
        message = f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; the ORM calls in the test are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def screenshot(page, name: str, **options) -> None:
    """Refresh docs/screenshots/<name>.png for the README when PIXELMILL_SCREENSHOTS is set."""
    if os.environ.get("PIXELMILL_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **options)


def process_uploads(client, campaign, recipes, files, capture) -> None:
    """Upload `files` (name → bytes), press Process with `recipes`, and drain the queue with a burst worker."""
    client.post(
        reverse("campaign-upload", args=[campaign.pk]), {"files": [upload(n, d) for n, d in files.items()]}
    )
    with capture(execute=True):
        client.post(reverse("campaign-process", args=[campaign.pk]), {"recipes": [r.pk for r in recipes]})
    with capture(execute=True):
        run_burst_worker()


@pytest.fixture
def processed(marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks):
    """processed(slug, files): `files` (name → bytes) through the ready recipe `slug` on a real RQ worker;
    returns the campaign."""

    def process(slug: str, files: dict[str, bytes]):
        recipes = [ready_recipes[slug]]
        process_uploads(marketer_client, campaign, recipes, files, django_capture_on_commit_callbacks)
        return campaign

    return process


@pytest.fixture
def banner_campaign(processed):
    """Two product shots processed by the sale banner (four outputs each) through a real RQ worker."""
    files = {
        "shoe.jpg": jpeg(product_on_white(320, 240, seed=1)),
        "bag.jpg": jpeg(product_on_white(300, 260, seed=2)),
    }
    campaign = processed("sale-banner", files)
    assert set(campaign.tasks.values_list("state", flat=True)) == {"succeeded"}
    return campaign


def publish_banner_text(recipe, text: str):
    """An admin's edit of the sale banner's badge text, saved as the recipe's next version."""
    recipe.steps.filter(operation="text_overlay").update(params={"text": text, "position": "top-left"})
    return recipe.publish_version()

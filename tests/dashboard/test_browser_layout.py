"""In Chromium, measured: pages fit a 390 px phone without sideways scrolling, the admin's recipe form fits a
1366 px laptop, the login fields line up, the new-campaign placeholder is whole, the campaign list's progress
is a readable bar with its numbers, and the admin has a favicon (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rq import Worker

from dashboard.models import Output, ShareLink, Task
from tests.dashboard.conftest import process_uploads, publish_banner_text
from tests.factories import add_source
from tests.jobs.images import jpeg, product_on_white

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Log out")


def keep(page, name: str) -> None:
    """A full-page picture in /tmp (PIXELMILL_LAYOUT_SHOTS names another folder) to look at by eye."""
    folder = Path(os.environ.get("PIXELMILL_LAYOUT_SHOTS", "/tmp/pixelmill-layout"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def page_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def wider_than(page, limit: int) -> list[str]:
    """The elements whose right edge passes `limit` px: what makes a page scroll sideways."""
    return page.evaluate(
        """limit => [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > limit + 0.5)
            .slice(0, 8)
            .map(el => el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).trim().replace(/\\s+/g, '.') : '')
                 + ' ' + Math.round(el.getBoundingClientRect().right))""",
        limit,
    )


def test_the_login_fields_line_up(browser_page, live_server, marketer):
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    username, password = page.locator("input[name=username]"), page.locator("input[name=password]")
    user_box, password_box = username.bounding_box(), password.bounding_box()
    keep(page, "login")
    assert user_box["x"] == password_box["x"]
    assert user_box["width"] == password_box["width"]


def test_the_new_campaign_placeholder_is_whole(browser_page, live_server, marketer):
    page = browser_page
    log_in(page, live_server, "maria", "pw-maria-123")
    for viewport in ({"width": 1280, "height": 900}, LAPTOP, PHONE):
        page.set_viewport_size(viewport)
        field = page.locator(".new-campaign input[name=name]")
        # What the placeholder needs (its text in the field's font) against the room the field gives it.
        needed, room = field.evaluate(
            """input => {
                const style = getComputedStyle(input);
                const context = document.createElement('canvas').getContext('2d');
                context.font = style.font;
                const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                return [context.measureText(input.placeholder).width, room];
            }"""
        )
        assert "Spring sale" in field.get_attribute("placeholder")
        assert needed <= room, (
            f"the placeholder needs {needed:.0f} px, the field has {room:.0f} at {viewport}"
        )
    keep(page, "campaign-list-phone")


def test_the_campaign_list_shows_progress_as_a_readable_bar_with_numbers(
    browser_page, live_server, marketer, campaign, ready_recipes
):
    recipe = ready_recipes["sale-banner"]
    version = recipe.current_version()
    for n, state in enumerate(["succeeded", "succeeded", "dead", "queued"]):
        source = add_source(campaign, jpeg(product_on_white(120, 90, seed=n)), name=f"item-{n}.jpg")
        Task.objects.create(campaign=campaign, source=source, recipe_version=version, state=state)
    page = browser_page
    log_in(page, live_server, "maria", "pw-maria-123")
    bar = page.locator(".campaign-progress").first
    bar.wait_for()
    box = bar.locator(".bar").bounding_box()
    assert box["height"] >= 12 and box["width"] >= 120
    text = bar.inner_text()
    assert "3/4" in text and "75%" in text
    assert bar.get_attribute("title") == "3 of 4 tasks finished: 2 succeeded, 1 failed or dead, 1 to go"
    keep(page, "campaign-list")


def test_the_admin_has_a_favicon(browser_page, live_server, admin_user):
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Pixelmill administration")
    # Where a browser asks for the icon: the page's <link rel=icon>, or /favicon.ico without one.
    href = page.evaluate(
        "() => (document.querySelector('link[rel~=icon]') || {href: new URL('/favicon.ico', location).href}).href"
    )
    assert page.request.get(href).status == 200
    assert page.request.get(f"{live_server.url}/favicon.ico").status == 200


def test_the_admin_recipe_form_fits_a_1366_px_screen(browser_page, live_server, admin_user, ready_recipes):
    page = browser_page
    page.set_viewport_size(LAPTOP)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "password")
    page.click("input[type=submit]")
    for slug in ("ecommerce-pack", "social-ads-pack"):
        page.goto(f"{live_server.url}/admin/dashboard/recipe/{ready_recipes[slug].pk}/change/")
        page.wait_for_selector("text=Preview before saving")
        assert page_width(page) <= LAPTOP["width"], wider_than(page, LAPTOP["width"])
        # Every output field is still there to edit.
        for field in ("name", "width", "fit", "format", "max_kb", "aspect", "webp_method", "avif_speed"):
            assert page.locator(f"[name='outputs-0-{field}']").is_visible(), field
    keep(page, "admin-recipe-1366")


LONG_NAME = "spring-2027-hero-shot-final-approved-by-legal-v3.jpg"


@pytest.fixture
def reviewed_campaign(
    marketer, marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    """A campaign as a phone shows its worst: a file name with no place to break, a dead task with a long
    reason, outputs approved and shared, and a marketer who is also staff (one more link in the top bar)."""
    marketer.is_staff = True
    marketer.save()
    process_uploads(
        marketer_client,
        campaign,
        [ready_recipes["sale-banner"]],
        {LONG_NAME: jpeg(product_on_white(320, 240, seed=1))},
        django_capture_on_commit_callbacks,
    )
    recipe_version = campaign.tasks.get().recipe_version
    source = add_source(campaign, jpeg(product_on_white(200, 150, seed=5)), name="another-" + LONG_NAME)
    Task.objects.create(
        campaign=campaign, source=source, recipe_version=recipe_version, state=Task.State.DEAD,
        attempts=5, error_code="rate_limited", error_step="remove_background",
        error_message="Photoroom is rate limiting us: it answered 429 Too Many Requests five times in a row.",
    )  # fmt: skip
    Output.objects.filter(task__campaign=campaign).record_review("approved", marketer)
    ShareLink.issue(campaign, marketer, days=7, label="Agency for the spring campaign (print and social)")
    # A second version of the recipe, so the versions can be compared too.
    publish_banner_text(ready_recipes["sale-banner"], "30% OFF")
    process_uploads(
        marketer_client, campaign, [ready_recipes["sale-banner"]], {}, django_capture_on_commit_callbacks
    )
    # A worker process as the system page lists it (registered, never started), on a long host name.
    worker = Worker(["control", "default"], connection=redis_conn, name="render-7f3c9a.t1")
    worker.hostname = "ip-10-0-12-34.eu-central-1.compute.internal"
    worker.register_birth()
    return campaign


def test_the_failures_compare_share_and_system_pages_fit_a_phone(
    browser_page, live_server, reviewed_campaign
):
    page = browser_page
    log_in(page, live_server, "maria", "pw-maria-123")
    page.set_viewport_size(PHONE)
    output = Output.objects.filter(task__campaign=reviewed_campaign, name="banner").first()
    link = ShareLink.objects.get()
    pages = {
        "failures": f"/campaigns/{reviewed_campaign.pk}/failures/",
        "compare": f"/outputs/{output.pk}/compare/",
        "compare-versions": f"/campaigns/{reviewed_campaign.pk}/recipes/{output.task.recipe_version.recipe_id}/versions/",
        "share": link.get_absolute_url(),
        "system": "/system/",
    }
    too_wide = {}
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")
        keep(page, f"{name}-phone")
        if page_width(page) > PHONE["width"]:
            too_wide[name] = (page_width(page), wider_than(page, PHONE["width"]))
    assert not too_wide

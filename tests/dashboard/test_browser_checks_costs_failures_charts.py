"""In Chromium: channel rules flagged in the gallery, the estimate and budget cap before Process, failures
requeued by cause with another provider, and the charts and system pages.

The work itself runs in this process (a burst worker) between page loads: these tests are about what the
pages show and do, and one worker is all they need.
"""

# ruff: noqa: F811 - the fixtures imported below are named again as test arguments

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rq import Worker

from dashboard.models import Campaign, Recipe, Task
from jobs.queueing import enqueue_attempts, get_process_queue
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import screenshot as save_screenshot
from tests.factories import add_source, make_remote_recipe
from tests.jobs.conftest import make_provider, simulator  # noqa: F401
from tests.jobs.images import jpeg, photo, product_on_white

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Log out")


def screenshot(page, name: str) -> None:
    save_screenshot(page, name, full_page=True)


def test_an_admin_sets_a_size_limit_and_the_gallery_flags_the_output_that_breaks_it(
    browser_page, live_server, admin_user, campaign, redis_conn
):
    page = browser_page
    recipe = Recipe.objects.create(name="Display ads", slug="display-ads")
    recipe.outputs.create(
        position=1, name="display-300x250", width=300, height=250, fit="fill", format="jpeg"
    )
    recipe.outputs.create(
        position=2, name="leaderboard", width=728, height=90, fit="fill", format="jpeg", max_kb=150
    )
    recipe.publish_version()
    add_source(campaign, jpeg(photo(900, 700, seed=3)), name="sneaker.jpg")

    log_in(page, live_server, "admin", "password")
    page.goto(f"{live_server.url}/admin/dashboard/recipe/{recipe.pk}/change/")
    page.fill("input[name=outputs-0-max_kb]", "2")  # a noisy photo cannot fit 2 KB at any decent quality
    page.fill("input[name=outputs-0-aspect]", "6:5")
    page.click("input[name=_save]")
    page.wait_for_selector("text=Saved as version 2")

    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    page.check(f"input[name=recipes][value='{recipe.pk}']")
    page.click("#process-button")
    page.wait_for_selector("text=Processing 1 task(s).")
    run_burst_worker()
    page.reload()

    banner = page.inner_text("#rules-banner")
    assert "1 output breaks a channel rule" in banner
    flagged = page.locator(".output.violates")
    assert flagged.count() == 1 and flagged.get_attribute("title").startswith("⚠ display-300x250 300×250")
    assert flagged.locator(".flag").inner_text() == "⚠"
    why = r"[\d.]+ KB, over the 2 KB limit \(even at quality 30\)"
    assert re.search(f"· ⚠ {why}", flagged.get_attribute("title")), "the reason shows on hovering the ⚠"
    assert "quality 85" in page.get_attribute(".output[data-output=leaderboard]", "title")  # within 150 KB
    screenshot(page, "channel-rules")
    flagged.click()  # the output's own page lists the rules it breaks
    rule = page.inner_text(".rule-flags li.rule-max_bytes")
    assert re.search(f"display-300x250: {why}", rule), rule
    page.go_back()
    # The notice's link shows just the images with an output that breaks a rule.
    page.click("#rules-banner >> text=Show it")
    page.wait_for_url(lambda url: "state=rule_breaking" in url)
    assert page.locator(".tile").count() == 1 and page.locator(".output.violates").count() == 1


def test_the_estimate_follows_the_ticks_and_a_deadline_and_the_budget_cap_pauses_then_resumes_the_run(
    browser_page, live_server, marketer, campaign, simulator, make_provider, redis_conn
):
    page = browser_page
    removebg = make_provider("removebg", price_per_call=Decimal("0.20"))
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    for n in range(3):
        add_source(campaign, jpeg(product_on_white(220 + 10 * n, 160)), name=f"bottle-{n}.jpg")

    log_in(page, live_server, "maria", "pw-maria-123")
    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    assert "Tick recipes" in page.inner_text("#estimate")
    page.check(f"input[name=recipes][value='{recipe.pk}']")
    page.wait_for_selector("#estimate-tasks")  # htmx swapped the estimate in
    assert page.inner_text("#estimate-tasks") == "3"
    assert page.inner_text("#estimate-calls") == "3" and "Simulated removebg ×3" in page.inner_text(
        "#estimate"
    )
    assert page.inner_text("#estimate-cost") == "0.60 USD"
    assert "no worker is running" in page.inner_text("#estimate")

    deadline = (timezone.localtime() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page.fill("input[name=deadline]", deadline)
    page.wait_for_selector("#estimate-plan")
    assert re.search(r"To finish by .*: 1 worker \(0 running now\)\.", page.inner_text("#estimate-plan"))

    page.fill("input[name=budget_cap]", "0.40")
    page.click("#budget-form button[type=submit]")
    page.wait_for_selector("text=Budget cap set to 0.40 USD.")
    page.check(f"input[name=recipes][value='{recipe.pk}']")
    page.wait_for_selector("#estimate-over-budget")
    screenshot(page, "estimate")

    page.click("#process-button")
    page.wait_for_selector("text=Processing 3 task(s).")
    run_burst_worker()
    page.reload()
    assert "Budget cap reached: remote work is paused." in page.inner_text("#paused-banner")
    assert "1 image waits for it" in page.inner_text("#paused-banner")
    assert Campaign.objects.get(pk=campaign.pk).remote_spent == Decimal("0.40")

    page.fill("#raise-budget input[name=budget_cap]", "1.00")
    page.wait_for_timeout(2500)  # the progress panel refreshes meanwhile: what was typed stays
    assert page.input_value("#raise-budget input[name=budget_cap]") == "1.00"
    page.click("#raise-budget button[type=submit]")
    page.wait_for_selector("text=1 waiting task is back on the queue")
    run_burst_worker()
    page.reload()
    assert page.inner_text("#progress .percent") == "100%"
    assert page.locator("#paused-banner").count() == 0
    assert "0.60 USD spent of 1.00 USD" in page.inner_text("#budget-spent")


def test_failures_grouped_by_cause_are_requeued_with_another_provider_and_succeed(
    browser_page, live_server, marketer, campaign, simulator, make_provider, redis_conn
):
    page = browser_page
    photoroom = make_provider("photoroom", name="Photoroom (simulated)")
    make_provider("removebg", name="remove.bg (simulated)")
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, photoroom)])
    version = recipe.current_version()
    for n, code in enumerate(["rate_limited", "rate_limited", "unreadable"]):
        source = add_source(campaign, jpeg(product_on_white(200 + 10 * n, 150)), name=f"item-{n}.jpg")
        Task.objects.create(
            campaign=campaign, source=source, recipe_version=version, state=Task.State.DEAD, attempts=5,
            error_code=code, error_step="remove_background" if code == "rate_limited" else "decode",
            error_message="Photoroom is rate limiting us." if code == "rate_limited" else "The file is corrupt.",
        )  # fmt: skip

    log_in(page, live_server, "maria", "pw-maria-123")
    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    page.click("#failure-causes a:has-text('Rate limited')")
    assert page.inner_text("h1") == "Failures: Rate limited"
    page.click("text=Show every cause")
    causes = page.locator("#causes .cause")
    assert causes.count() == 2
    assert causes.nth(0).locator(".cause-label").inner_text() == "Rate limited"
    assert causes.nth(0).locator(".cause-count").inner_text() == "2"
    assert causes.nth(1).locator(".cause-label").inner_text() == "Unreadable file"
    screenshot(page, "failures")

    causes.nth(0).locator("text=Requeue these 2…").click()
    page.wait_for_selector("h1:has-text('Requeue 2 failed tasks (rate limited)?')")
    page.select_option("select[name=provider_remove_background]", "sim-removebg")
    page.click("text=Yes, requeue")
    page.wait_for_selector("text=Requeued 2 task(s); remove background with remove.bg (simulated).")
    run_burst_worker()

    states = dict(campaign.tasks.values_list("source__display_name", "state"))
    assert states == {"item-0.jpg": "succeeded", "item-1.jpg": "succeeded", "item-2.jpg": "dead"}
    assert {e["provider"] for e in simulator.log() if e["kind"] == "api"} == {"removebg"}
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/failures/")
    assert page.locator("#causes .cause").count() == 1


def test_charts_draw_a_campaigns_work_and_the_system_page_refreshes_queues_and_workers(
    browser_page, live_server, marketer, campaign, ready_recipes, redis_conn
):
    page = browser_page
    now = timezone.now()
    version = ready_recipes["sale-banner"].current_version()
    for n in range(12):
        source = add_source(campaign, jpeg(photo(40, 30, seed=n)), name=f"{n}.jpg")
        failed = n % 4 == 0
        Task.objects.create(
            campaign=campaign, source=source, recipe_version=version,
            state=Task.State.FAILED if failed else Task.State.SUCCEEDED, error_code="timeout" if failed else "",
            duration_ms=None if failed else 900 + 150 * n, finished_at=now - timedelta(seconds=20 * n),
        )  # fmt: skip

    log_in(page, live_server, "maria", "pw-maria-123")
    page.goto(f"{live_server.url}{campaign.get_absolute_url()}")
    page.click("a.button:has-text('Charts')")
    page.wait_for_selector("svg#throughput")
    assert page.locator("svg.chart").count() == 3
    assert page.locator("svg#throughput rect.chart-bar").count() >= 9
    assert page.locator("svg#task-time polyline.line").count() >= 1
    assert "Timed out" in page.text_content("svg#errors")
    assert page.inner_text("#figure-finished") == "12"
    box = page.locator("svg#throughput").bounding_box()
    assert box["width"] > 600 and box["height"] > 150  # drawn at size, not collapsed
    # A bar of 1 on an axis to 4 fills a quarter of the plot: the page's CSS must not resize SVG marks.
    bar = page.locator("svg#throughput rect.chart-bar").first.bounding_box()
    assert 0.15 * box["height"] < bar["height"] < 0.35 * box["height"]
    page.click("text=Last hour")
    page.wait_for_selector("a.primary:has-text('Last hour')")
    screenshot(page, "charts")

    worker = Worker([get_process_queue()], connection=redis_conn, name="pixelmill-browser-worker")
    worker.register_birth()
    worker.set_state("busy")
    try:
        page.click("nav >> text=System")
        page.wait_for_selector("figure.worker[data-worker='pixelmill-browser-worker']")
        assert "busy" in page.inner_text("figure.worker.busy")
        assert page.locator("svg#queues").count() == 1
        enqueue_attempts([(pk, 1) for pk in range(4)])
        # The live part refreshes every 5 s: the new jobs appear without a reload.
        page.wait_for_selector(
            "svg#queues rect.chart-bar >> title:has-text('default: 4 waiting')",
            state="attached",
            timeout=15_000,
        )
        screenshot(page, "system")
    finally:
        worker.register_death()

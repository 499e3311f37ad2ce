"""Content-Security-Policy: every page, the Django admin's and the queue pages too, is sent with it; and in
Chromium they keep to it: nothing the browser refuses (a script, a style, a picture, a form target), whether in
the page as loaded, in what htmx swaps in later or in the admin's recipe preview."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.models import Output, ShareLink, Task
from dashboard.queue_pages import inline_hashes
from tests.polling import wait_until

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "style-src-elem": "'self'",
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def policy(response) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    return {name: sources for name, sources in directives}


def test_pages_are_sent_with_the_policy(marketer_client, campaign, django_user_model, redis_conn):
    """The marketer's pages, the login pages, a share link's 404 and the admin: scripts and style sheets from our
    own files only; the queue pages add just the hashes of django-rq's own inline blocks."""
    anonymous = Client()
    for response in (
        marketer_client.get(reverse("campaign-list")),
        marketer_client.get(campaign.get_absolute_url()),
        anonymous.get(reverse("login")),
        anonymous.get("/admin/login/"),
        anonymous.get("/share/garbage/"),
    ):
        assert policy(response) == POLICY, response.request["PATH_INFO"]
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("ada", password="pw-ada-123"))
    assert policy(admin.get(reverse("admin:dashboard_recipe_changelist"))) == POLICY
    queue_page = policy(admin.get(reverse("django_rq:jobs", args=[0])))
    assert queue_page["script-src"] == " ".join(["'self'", *inline_hashes("script")])
    assert queue_page["style-src-elem"] == " ".join(["'self'", *inline_hashes("style")])
    assert len(inline_hashes("script")) == 1 and len(inline_hashes("style")) == 3, "django-rq 4.2's blocks"


# Reports every refusal to Python, whichever page it happens on (init scripts are not subject to the page's CSP),
# and counts htmx's swaps so a test can wait for a live panel to refresh once.
WATCH = """
document.addEventListener("securitypolicyviolation", event => window.cspViolation(
    `${location.pathname}: ${event.effectiveDirective} refused ${event.blockedURI || "inline"}`
    + ` (${event.sourceFile || ""}:${event.lineNumber}) ${event.sample || ""}`));
document.addEventListener("htmx:afterSettle", () => { window.htmxSwaps = (window.htmxSwaps || 0) + 1; });
"""


@pytest.fixture
def watched_page(browser_page):
    """The browser page, with every CSP refusal (event or console message) collected in `page.violations`."""
    page = browser_page
    page.violations = []
    page.expose_function("cspViolation", lambda text: page.violations.append(text))
    page.add_init_script(WATCH)
    page.on(
        "console",
        lambda message: (
            page.violations.append(f"{message.location.get('url')}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return page


def visit(page, url: str, ready: str = "body") -> None:
    """Open the page; it must come with a policy, and draw what `ready` names."""
    response = page.goto(url)
    assert response is not None and response.ok, url
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or ""), (
        f"{url} came without a Content-Security-Policy"
    )
    page.wait_for_selector(ready, state="attached")


def log_in(page, url: str, username: str, password: str) -> None:
    visit(page, url, "input[name=username]")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form [type=submit]")
    page.wait_for_load_state()


@pytest.mark.browser
@pytest.mark.integration
def test_every_page_keeps_to_the_content_security_policy(
    watched_page, live_server, banner_campaign, marketer, ready_recipes, django_user_model
):
    page = watched_page
    site = live_server.url
    campaign = banner_campaign
    Output.objects.filter(task__campaign=campaign, name="banner").record_review("approved", None)
    output = Output.objects.filter(task__campaign=campaign).first()
    source = output.task.source
    Task.objects.create(
        campaign=campaign, source=source, recipe_version=ready_recipes["ecommerce-pack"].current_version(),
        state=Task.State.DEAD, attempts=5, error_code="rate_limited", error_step="remove_background",
    )  # fmt: skip
    link = ShareLink.issue(campaign, marketer, days=7)

    # Without an account: the share page and both login pages.
    visit(page, f"{site}{link.get_absolute_url()}", "#shared-download")
    visit(page, f"{site}/admin/login/", "#login-form")
    log_in(page, f"{site}/accounts/login/", "maria", "pw-maria-123")
    page.wait_for_selector("text=Log out")

    # The marketer's pages.
    visit(page, f"{site}/", "h1")
    visit(page, f"{site}{campaign.get_absolute_url()}", "#progress")
    visit(page, f"{site}{reverse('campaign-failures', args=[campaign.pk])}", "h1")
    visit(page, f"{site}{reverse('output-compare', args=[output.pk])}", ".compare-stage")
    visit(page, f"{site}{reverse('campaign-charts', args=[campaign.pk])}", "svg.chart")
    visit(page, f"{site}{reverse('source-focal-point', args=[source.pk])}", ".focal-marker")
    visit(page, f"{site}{reverse('system')}", "#system-live")
    # The live panel refreshes itself (Playwright's wait_for_function would evaluate a string: refused here).
    wait_until(lambda: page.evaluate("() => window.htmxSwaps || 0"), timeout=15, message="htmx never swapped")

    # The admin: its own pages, the recipe form with a preview rendered into it, and the queue pages.
    django_user_model.objects.create_superuser("ada", password="pw-ada-123")
    recipe = ready_recipes["sale-banner"]
    log_in(page, f"{site}/admin/login/?next=/admin/dashboard/recipe/{recipe.pk}/change/", "ada", "pw-ada-123")
    page.wait_for_selector("text=Preview before saving")
    page.click("#preview-button")
    page.locator(".preview-card.output img").first.wait_for()
    visit(page, f"{site}/admin/", "#content-main")
    visit(page, f"{site}/admin/dashboard/recipe/", "#changelist")
    visit(page, f"{site}{reverse('django_rq:home')}", "#content-main")
    visit(page, f"{site}{reverse('django_rq:jobs', args=[0])}", "#content-main")

    # Whatever was refused late has been reported by the time the last page has drawn.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))")
    assert not page.violations, "\n".join(page.violations)

"""The seven confirm-then-act pages: each asks on GET and changes nothing, acts only on a POST with its CSRF
token, refuses other methods, and answers 404 to another team."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.models import Generation, Provider, ShareLink, SourceImage, Task, Team, UrlImport


@dataclass(frozen=True)
class ConfirmPage:
    url: str
    question: str
    button: str
    state: Callable[[], object]  # what the action changes, read afresh


def add_source(campaign, n: int) -> SourceImage:
    return SourceImage.objects.create(
        campaign=campaign, sha256=f"{n:064x}", display_name=f"shoe-{n}.jpg", file="x.jpg",
        width=10, height=10, format="JPEG", byte_size=1,
    )  # fmt: skip


@pytest.fixture
def pages(campaign, marketer, ready_recipes, redis_conn) -> dict[str, ConfirmPage]:
    recipe = ready_recipes["sale-banner"]
    campaign.recipes.add(recipe)
    task = Task.objects.create(
        campaign=campaign, source=add_source(campaign, 1), recipe_version=recipe.current_version(),
        state=Task.State.FAILED, attempts=5, error_code="timeout", error_message="The provider timed out.",
    )  # fmt: skip
    add_source(campaign, 2)  # no task yet: the re-run has one image to do
    fal = Provider.objects.create(name="fal", slug="fal", kind="fal", base_url="https://queue.fal.run")
    failed = Generation.objects.create(
        campaign=campaign, provider=fal, prompt="A red <b>lamp</b>", state=Generation.State.FAILED
    )
    waiting = Generation.objects.create(campaign=campaign, provider=fal, prompt="A rug")
    UrlImport.objects.create(
        campaign=campaign,
        url="https://example.com/a.jpg",
        state=UrlImport.State.FAILED,
        error_code="http_503",
    )
    link = ShareLink.issue(campaign, marketer, days=7, label="Agency")

    def task_state() -> str:
        return Task.objects.get(pk=task.pk).state

    return {
        "campaign-url-imports-retry": ConfirmPage(
            reverse("campaign-url-imports-retry", args=[campaign.pk]), "Try 1 URL again?", "Yes, try again",
            lambda: campaign.url_imports.get().state,
        ),
        "campaign-requeue-failed": ConfirmPage(
            reverse("campaign-requeue-failed", args=[campaign.pk]) + "?cause=timeout",
            "Requeue 1 failed task (timed out)?", "Yes, requeue", task_state,
        ),
        "task-requeue": ConfirmPage(
            reverse("task-requeue", args=[task.pk]), "Requeue shoe-1.jpg?", "Yes, requeue", task_state
        ),
        "generation-cancel": ConfirmPage(
            reverse("generation-cancel", args=[waiting.pk]), "Cancel “A rug”?", "Yes, cancel",
            lambda: Generation.objects.get(pk=waiting.pk).state,
        ),
        "generation-requeue": ConfirmPage(
            # The prompt is the marketer's text, shown escaped like everything else on the page.
            reverse("generation-requeue", args=[failed.pk]), "Requeue “A red &lt;b&gt;lamp&lt;/b&gt;”?",
            "Yes, requeue", lambda: Generation.objects.get(pk=failed.pk).state,
        ),
        "campaign-rerun": ConfirmPage(
            reverse("campaign-rerun", args=[campaign.pk, recipe.pk]),
            f"Re-run 1 image on {recipe.name} v{recipe.version}?", "Yes, re-run", lambda: Task.objects.count(),
        ),
        "share-link-revoke": ConfirmPage(
            reverse("share-link-revoke", args=[link.pk]), "Revoke “Agency”?", "Yes, revoke",
            lambda: ShareLink.objects.get(pk=link.pk).is_revoked,
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [
        "campaign-url-imports-retry",
        "campaign-requeue-failed",
        "task-requeue",
        "generation-cancel",
        "generation-requeue",
        "campaign-rerun",
        "share-link-revoke",
    ],
)
def test_a_confirm_page_asks_first_and_acts_only_on_a_post_with_its_csrf_token(name, pages, marketer):
    page = pages[name]
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    before = page.state()

    asked = client.get(page.url)
    text = asked.content.decode()
    assert asked.status_code == 200 and page.question in text and page.button in text
    assert 'name="csrfmiddlewaretoken"' in text
    token = client.cookies["csrftoken"].value
    assert client.put(page.url, headers={"X-CSRFToken": token}).status_code == 405
    assert client.post(page.url).status_code == 403
    assert page.state() == before, "nothing happens before the confirmation"

    done = client.post(page.url, {"csrfmiddlewaretoken": token})
    assert done.status_code == 302
    assert page.state() != before
    assert client.get(done.url).status_code == 200


@pytest.mark.parametrize("name", ["campaign-requeue-failed", "generation-cancel", "share-link-revoke"])
def test_another_teams_confirm_page_answers_404_to_a_get_and_a_post(name, pages, client, django_user_model):
    outsider = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Team.objects.create(name="Other team").members.add(outsider)
    client.force_login(outsider)
    before = pages[name].state()
    assert client.get(pages[name].url).status_code == 404
    assert client.post(pages[name].url).status_code == 404
    assert pages[name].state() == before

"""Ids and numbers a page reads from a request, sent huge, negative, not numbers or empty: each is answered
400, 404 or a form error, never 500 (a 30-digit recipe id used to overflow the database's integer)."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, reverse
from django.urls.converters import IntConverter

from dashboard import urls
from dashboard.models import Generation, Output, Provider, ShareLink, Task
from tests.factories import make_task, recipe_form

# Past a signed 64-bit integer, far past it, below it, negative, not a number, a digit int() refuses, empty.
BAD_NUMBERS = [
    "9223372036854775808",
    "9" * 30,
    "-9223372036854775809",
    "-1",
    "0",
    "abc",
    "1e999",
    "nan",
    "²",
    " 7",
    "",
]
HUGE_ID = 9 * 10**29


@pytest.fixture
def pages(marketer, campaign, ready_recipes):
    """A campaign with a failed task, an output, a share link and a generation: every page has something."""
    recipe = ready_recipes["sale-banner"]
    campaign.recipes.add(recipe)
    task = make_task(campaign, recipe, state=Task.State.FAILED, error_code="unreadable")
    output = Output.objects.create(
        task=task, name="square", file="x.png", width=1, height=1, format="png", byte_size=1
    )
    fal = Provider.objects.create(name="fal", slug="fal", kind="fal", base_url="https://queue.fal.run")
    generation = Generation.objects.create(campaign=campaign, provider=fal, prompt="red shoes")
    link = ShareLink.issue(campaign, marketer, days=7)
    return {
        "campaign": campaign,
        "recipe": recipe,
        "task": task,
        "output": output,
        "fal": fal,
        "generation": generation,
        "link": link,
    }


# (method, URL name, the row whose pk the URL takes, field read from the request, the rest of a valid request)
PARAMETERS = [
    ("get", "campaign-estimate", "campaign", "recipes", {}),
    ("get", "campaign-estimate", "campaign", "deadline", {}),
    ("post", "campaign-process", "campaign", "recipes", {}),
    ("post", "campaign-budget", "campaign", "budget_cap", {}),
    ("get", "campaign-detail", "campaign", "page", {}),
    ("get", "campaign-detail", "campaign", "gpage", {}),
    ("get", "campaign-failures", "campaign", "page", {}),
    ("get", "campaign-failures", "campaign", "code", {}),
    ("get", "campaign-charts", "campaign", "range", {}),
    ("get", "campaign-progress", "campaign", "format", {}),
    ("post", "campaign-requeue-failed", "campaign", "version", {}),
    ("post", "campaign-generate", "campaign", "provider", {"prompts": "red shoes", "image_size": "square_hd", "num_images": "1"}),
    ("post", "campaign-generate", "campaign", "num_images", {"prompts": "red shoes", "image_size": "square_hd", "provider": "fal"}),
    ("post", "campaign-generate", "campaign", "image_size", {"prompts": "red shoes", "num_images": "1", "provider": "fal"}),
    ("post", "share-link-create", "campaign", "days", {}),
    ("post", "source-focal-point", "source", "x", {"y": "0.5"}),
    ("post", "source-focal-point", "source", "y", {"x": "0.5"}),
    ("get", "output-compare", "output", "against", {}),
    ("post", "output-review", "output", "decision", {}),
    ("post", "task-review", "task", "decision", {}),
    ("get", "version-compare", "campaign+recipe", "after", {}),
    ("get", "version-compare", "campaign+recipe", "before", {}),
    ("get", "version-compare", "campaign+recipe", "page", {}),
    ("get", "share-link", "token", "page", {}),
]  # fmt: skip


def url_for(name: str, owner: str, pages: dict) -> str:
    if owner == "campaign+recipe":
        return reverse(name, args=[pages["campaign"].pk, pages["recipe"].pk])
    if owner == "token":
        return reverse(name, args=[pages["link"].token])
    if owner == "source":
        return reverse(name, args=[pages["task"].source_id])
    return reverse(name, args=[pages[owner].pk])


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "name", "owner", "field", "rest"), PARAMETERS)
def test_every_number_a_page_reads_is_validated(marketer_client, pages, method, name, owner, field, rest):
    url = url_for(name, owner, pages)
    if "provider" in rest:
        rest = {**rest, "provider": str(pages["fal"].pk)}
    answers = {}
    for value in BAD_NUMBERS:
        response = getattr(marketer_client, method)(url, {**rest, field: value})
        answers[value] = response.status_code
        # A list of ids with one bad one in it is refused as a whole too.
        response = getattr(marketer_client, method)(url, {**rest, field: [str(pages["recipe"].pk), value]})
        answers[f"[ok, {value}]"] = response.status_code
    assert not {value: status for value, status in answers.items() if status >= 500}, answers


def id_routes(patterns) -> list[tuple[str, dict[str, object]]]:
    """(URL name, its path arguments with every id past the database's integer) for each dashboard route
    that takes an id in its path."""
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            continue  # the admin and the RQ pages have their own URL handling
        assert isinstance(pattern, URLPattern)
        converters = pattern.pattern.converters
        kwargs = {key: HUGE_ID if isinstance(c, IntConverter) else "x" for key, c in converters.items()}
        if HUGE_ID in kwargs.values() and pattern.name:
            found.append((pattern.name, kwargs))
    return found


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs"), id_routes(urls.urlpatterns))
def test_an_id_past_the_database_integer_in_the_path_is_not_found(marketer_client, pages, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    for method in ("get", "post"):
        response = getattr(marketer_client, method)(url)
        assert response.status_code in {302, 400, 404, 405}, (method, url, response.status_code)


@pytest.mark.django_db
def test_a_recipe_id_past_the_database_integer_is_a_form_error_on_process(marketer_client, pages):
    campaign = pages["campaign"]
    response = marketer_client.post(reverse("campaign-process", args=[campaign.pk]), {"recipes": "1" * 30})
    assert response.status_code == 302
    assert not campaign.tasks.exclude(pk=pages["task"].pk).exists()
    page = marketer_client.get(campaign.get_absolute_url())
    assert "Select a valid choice" in page.content.decode()


@pytest.mark.django_db
def test_a_source_id_past_the_database_integer_is_no_preview_sample(admin_client, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    for value in BAD_NUMBERS:
        data = {**recipe_form(recipe), "_preview_recipe": str(recipe.pk), "preview_sample": f"source-{value}"}
        response = admin_client.post(reverse("admin:dashboard_recipe_preview"), data)
        assert response.status_code == 400, (value, response.status_code)
        assert "Pick a sample image" in response.content.decode()

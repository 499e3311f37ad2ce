"""The campaign page's gallery: filters by state, recipe and review, on the newest result of each recipe, kept
across pages; each result shows only what matches."""

from __future__ import annotations

import pytest

from dashboard.models import Task
from dashboard.views import campaigns
from tests.dashboard.pages import find_all
from tests.factories import make_source

pytestmark = pytest.mark.django_db


def add_result(campaign, source, recipe, state, *, reviews=(), violations=False, version=None) -> Task:
    """A task of `recipe` on `source`, with one output per review decision in `reviews`."""
    task = Task.objects.create(
        campaign=campaign,
        source=source,
        recipe_version=version or recipe.current_version(),
        state=state,
        error_code="timeout" if state == Task.State.FAILED else "",
        error_message="The step took longer than the 60 s limit." if state == Task.State.FAILED else "",
    )
    for n, review in enumerate(reviews):
        task.outputs.create(
            name=f"out-{n}", file=f"out-{task.pk}-{n}.jpg", width=100, height=100, format="jpeg", byte_size=1000,
            review=review, violations=[{"rule": "max_bytes", "message": "too big"}] if violations else [],
        )  # fmt: skip
    return task


def tiles(client, campaign, **query) -> list[str]:
    """The names of the images the gallery shows for this query, in order."""
    page = client.get(campaign.get_absolute_url(), query).content.decode()
    return [figure.text.split()[0] for figure in find_all(page, "figure", class_="tile")]


@pytest.fixture
def mixed(campaign, ready_recipes):
    """Five images: ready (to review), failed, in progress, never processed, and one ready in two recipes."""
    banner, ecommerce = ready_recipes["sale-banner"], ready_recipes["ecommerce-pack"]
    names = ["ready.jpg", "failed.jpg", "working.jpg", "new.jpg", "both.jpg"]
    ready, failed, working, _, both = (
        make_source(campaign, sha=f"{n:064d}", name=name) for n, name in enumerate(names)
    )
    add_result(campaign, ready, banner, Task.State.SUCCEEDED, reviews=["pending", "pending"])
    add_result(campaign, failed, banner, Task.State.FAILED)
    add_result(campaign, working, banner, Task.State.QUEUED)
    add_result(campaign, both, banner, Task.State.SUCCEEDED, reviews=["approved", "approved"])
    add_result(campaign, both, ecommerce, Task.State.SUCCEEDED, reviews=["rejected"], violations=True)
    return campaign


def test_without_a_filter_every_image_is_shown(marketer_client, mixed):
    assert tiles(marketer_client, mixed) == ["ready.jpg", "failed.jpg", "working.jpg", "new.jpg", "both.jpg"]


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        ("ready", ["ready.jpg", "both.jpg"]),
        ("failed", ["failed.jpg"]),
        ("working", ["working.jpg"]),
        ("new", ["new.jpg"]),
        ("rule_breaking", ["both.jpg"]),
    ],
)
def test_the_state_filter_keeps_the_images_with_a_result_in_that_state(marketer_client, mixed, state, shown):
    assert tiles(marketer_client, mixed, state=state) == shown


def test_recipe_and_review_hold_for_the_same_result_and_a_tile_shows_only_what_matches(
    marketer_client, mixed, ready_recipes
):
    banner, ecommerce = ready_recipes["sale-banner"], ready_recipes["ecommerce-pack"]
    assert tiles(marketer_client, mixed, recipe=banner.pk, review="approved") == ["both.jpg"]
    assert tiles(marketer_client, mixed, recipe=ecommerce.pk, review="approved") == []
    assert tiles(marketer_client, mixed, review="pending") == ["ready.jpg"]

    page = marketer_client.get(mixed.get_absolute_url(), {"review": "rejected"}).content.decode()
    [tile] = find_all(page, "figure", class_="tile")
    heads = [head.text for head in find_all(page, "div", class_="task-head")]
    assert heads == ["E-commerce pack v1 ✕ 1 rejected"], "the approved banner result is left out"
    assert "1 of 5 images" in page and "No image matches" not in page


def test_a_filter_looks_at_the_newest_version_of_each_recipe(marketer_client, campaign, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    source = make_source(campaign, name="rerun.jpg")
    first = recipe.current_version()
    add_result(campaign, source, recipe, Task.State.FAILED, version=first)
    recipe.publish_version()
    add_result(campaign, source, recipe, Task.State.SUCCEEDED, reviews=["pending"])
    assert tiles(marketer_client, campaign, state="failed") == []
    assert tiles(marketer_client, campaign, state="ready") == ["rerun.jpg"]


def test_filters_survive_paging(marketer_client, campaign, ready_recipes, monkeypatch):
    monkeypatch.setattr(campaigns, "GALLERY_PAGE_SIZE", 2)
    banner = ready_recipes["sale-banner"]
    for n in range(5):
        source = make_source(campaign, sha=f"{n:064d}", name=f"img-{n}.jpg")
        if n % 2 == 0:
            add_result(campaign, source, banner, Task.State.SUCCEEDED, reviews=["pending"])
        else:
            add_result(campaign, source, banner, Task.State.FAILED)

    page = marketer_client.get(campaign.get_absolute_url(), {"state": "ready"}).content.decode()
    [next_link] = [a for a in find_all(page, "a") if a.text == "Next →"]
    assert next_link.attrs["href"] == "?state=ready&page=2#gallery"
    assert tiles(marketer_client, campaign, state="ready") == ["img-0.jpg", "img-2.jpg"]
    assert tiles(marketer_client, campaign, state="ready", page=2) == ["img-4.jpg"]
    # The filter stays chosen on the next page, and a review sent from it comes back to it.
    page_two = marketer_client.get(
        campaign.get_absolute_url(), {"state": "ready", "page": 2}
    ).content.decode()
    assert '<option value="ready" selected>' in page_two
    [back] = find_all(page_two, "input", name="next")
    assert back.attrs["value"].startswith(campaign.get_absolute_url() + "?state=ready&page=2#source-")


def test_unknown_filter_values_are_ignored(marketer_client, mixed):
    assert len(tiles(marketer_client, mixed, state="bogus", recipe="x", review="maybe")) == 5


def test_a_filter_that_matches_nothing_says_so_and_offers_everything(
    marketer_client, campaign, ready_recipes
):
    make_source(campaign, name="only.jpg")
    page = marketer_client.get(campaign.get_absolute_url(), {"state": "failed"}).content.decode()
    assert "No image matches." in page and "0 of 1 image" in page

"""Ready recipes that nobody edited follow what Pixelmill ships; edited ones are never touched."""

from __future__ import annotations

from django.core.management import call_command

from dashboard.models import Recipe
from dashboard.ready_recipes import READY_RECIPES, SUPERSEDED_STEPS, upgrade_ready_recipes


def install_as_shipped_before(slug: str) -> Recipe:
    spec = next(spec for spec in READY_RECIPES if spec["slug"] == slug)
    recipe = Recipe.objects.create(name=spec["name"], slug=slug, description="as shipped before")
    for position, (operation, params) in enumerate(SUPERSEDED_STEPS[slug][0], start=1):
        recipe.steps.create(position=position, operation=operation, params=params)
    for position, output in enumerate(spec["outputs"], start=1):
        recipe.outputs.create(position=position, **output)
    recipe.publish_version()
    return recipe


def test_an_unedited_social_pack_loses_its_colour_changing_enhance_in_a_new_version(db):
    recipe = install_as_shipped_before("social-ads-pack")
    assert [r.slug for r in upgrade_ready_recipes()] == ["social-ads-pack"]
    recipe.refresh_from_db()
    assert recipe.version == 2
    assert [step["operation"] for step in recipe.current_version().definition["steps"]] == ["smart_crop"]
    assert [step["operation"] for step in recipe.versions.get(number=1).definition["steps"]] == [
        "enhance",
        "smart_crop",
    ]
    assert upgrade_ready_recipes() == []  # once


def test_an_edited_ready_recipe_is_left_alone(db):
    recipe = install_as_shipped_before("ecommerce-pack")
    recipe.outputs.filter(name="zoom").update(width=1600, height=1600)
    assert upgrade_ready_recipes() == []
    recipe.refresh_from_db()
    assert recipe.version == 1
    assert recipe.steps.get(operation="remove_background").params == {}


def test_setup_says_which_recipes_it_brought_up_to_date(db, capsys):
    install_as_shipped_before("ecommerce-pack")
    call_command("pixelmill_setup")
    out = capsys.readouterr().out
    assert "Updated recipe “E-commerce pack”" in out and "Installed recipe “Social ads pack”" in out
    step = Recipe.objects.get(slug="ecommerce-pack").steps.get(operation="remove_background")
    assert step.params == {"if_unsuitable": "keep"}

"""Recipe admin: steps and outputs are validated by the operation registry, and every save is a new version."""

from __future__ import annotations

from django.urls import reverse

from tests.factories import recipe_form


def test_saving_a_recipe_in_the_admin_publishes_a_new_version(admin_client, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    url = reverse("admin:dashboard_recipe_change", args=[recipe.pk])
    assert "Operations and their parameters" in admin_client.get(url).content.decode()
    response = admin_client.post(url, recipe_form(recipe, text_overlay='{"text": "30% OFF"}'))
    assert response.status_code == 302, response.content.decode()[:2000]
    recipe.refresh_from_db()
    assert recipe.version == 2
    assert recipe.current_version().definition["steps"][1]["params"]["text"] == "30% OFF"


def test_invalid_step_params_are_refused_with_the_registry_message(admin_client, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    url = reverse("admin:dashboard_recipe_change", args=[recipe.pk])
    response = admin_client.post(url, recipe_form(recipe, watermark='{"opacity": 3}'))
    assert response.status_code == 200
    assert "opacity" in response.content.decode()
    recipe.refresh_from_db()
    assert recipe.version == 1


def test_an_output_row_carries_channel_rules_into_the_next_version(admin_client, ready_recipes):
    recipe = ready_recipes["social-ads-pack"]
    url = reverse("admin:dashboard_recipe_change", args=[recipe.pk])
    page = admin_client.get(url).content.decode()
    assert "outputs-0-max_kb" in page and "outputs-0-aspect" in page
    data = recipe_form(recipe)
    facebook = next(n for n, o in enumerate(recipe.outputs.all()) if o.name == "facebook")
    data |= {f"outputs-{facebook}-max_kb": "200", f"outputs-{facebook}-aspect": "1200:628"}
    assert admin_client.post(url, data).status_code == 302
    specs = {spec.name: spec for spec in recipe.current_version().build_specs()}
    assert (specs["facebook"].max_bytes, specs["facebook"].aspect) == (200 * 1024, "300:157")
    assert specs["display-300x250"].max_bytes == 150 * 1024  # the ready display ads come with the limit


def test_a_rule_the_box_can_never_meet_is_refused_in_the_admin(admin_client, ready_recipes):
    recipe = ready_recipes["social-ads-pack"]
    url = reverse("admin:dashboard_recipe_change", args=[recipe.pk])
    data = recipe_form(recipe) | {"outputs-0-aspect": "1:1"}  # facebook fills 1200×628
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "never 1:1" in response.content.decode()
    recipe.refresh_from_db()
    assert recipe.version == 1


def test_the_campaign_admin_shows_the_budget_cap_and_what_was_spent(admin_client, campaign):
    from decimal import Decimal

    from dashboard.models import Campaign

    Campaign.objects.filter(pk=campaign.pk).update(budget_cap=Decimal("20"), remote_spent=Decimal("3.25"))
    page = admin_client.get(reverse("admin:dashboard_campaign_change", args=[campaign.pk])).content.decode()
    assert 'name="budget_cap"' in page and "3.2500" in page and 'name="remote_spent"' not in page


def test_encoder_options_are_edited_in_the_output_inline(admin_client, ready_recipes):
    recipe = ready_recipes["ecommerce-pack"]
    url = reverse("admin:dashboard_recipe_change", args=[recipe.pk])
    page = admin_client.get(url).content.decode()
    assert "webp_method" in page and "progressive" in page and "avif_speed" in page
    data = recipe_form(recipe)
    index = [o.name for o in recipe.outputs.all()].index("zoom-webp")
    response = admin_client.post(url, {**data, f"outputs-{index}-webp_method": "9"})
    assert response.status_code == 200 and "webp_method" in response.content.decode()
    response = admin_client.post(url, {**data, f"outputs-{index}-webp_method": "2"})
    assert response.status_code == 302
    assert recipe.current_version().build_specs()[index].webp_method == 2


def test_step_provider_menus_offer_step_providers_saying_what_each_can_do(admin_client, ready_recipes):
    from dashboard.models import Provider

    common = {"base_url": "http://127.0.0.1:9", "api_key_env": "NONE"}
    Provider.objects.create(name="remove.bg", slug="rbg", kind="removebg", **common)
    Provider.objects.create(name="PixelPanda", slug="pp", kind="pixelpanda", **common)
    Provider.objects.create(name="fal flux", slug="fal", kind="fal", **common)
    recipe = ready_recipes["ecommerce-pack"]
    page = admin_client.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk])).content.decode()
    assert "remove.bg — can: remove background<" in page
    assert "PixelPanda — can: remove background, enhance, upscale<" in page
    assert "fal flux" not in page, "a text-to-image provider cannot run a recipe step"

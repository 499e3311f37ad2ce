"""Recipe preview in the admin: the change form as edited, unsaved, rendered on a sample in the request —
every output with its byte size, nothing saved or queued, provider steps run locally and said so."""

from __future__ import annotations

import base64
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from dashboard.models import Campaign, Provider, RecipeVersion, SourceImage, Task, Team
from dashboard.recipe_preview import BUNDLED_SAMPLES
from tests.factories import recipe_form, upload
from tests.jobs.images import jpeg, photo, product_on_white

PREVIEW_URL = reverse("admin:dashboard_recipe_preview")


def preview_form(recipe, sample="bundled-bottle", **step_overrides) -> dict:
    return {
        **recipe_form(recipe, **step_overrides),
        "_preview_recipe": str(recipe.pk),
        "preview_sample": sample,
    }


def rendered_outputs(html: str) -> dict[str, tuple[Image.Image, int]]:
    """output name → (decoded picture, the byte count the page states) from the preview fragment."""
    found = {}
    for name, uri, stated in re.findall(
        r'data-output="([^"]+)">\s*<img src="data:image/\w+;base64,([^"]+)".*?class="bytes"[^>]*>([\d,]+) bytes',
        html,
        re.S,
    ):
        data = base64.b64decode(uri)
        assert len(data) == int(stated.replace(",", "")), name
        found[name] = (Image.open(io.BytesIO(data)), len(data))
    return found


def test_the_change_form_offers_samples_and_a_preview_button(admin_client, ready_recipes):
    page = admin_client.get(reverse("admin:dashboard_recipe_change", args=[ready_recipes["sale-banner"].pk]))
    html = page.content.decode()
    assert "Preview before saving" in html and PREVIEW_URL in html
    assert all(label in html for _, label in BUNDLED_SAMPLES.values())


def test_every_output_of_the_unsaved_form_is_rendered_with_its_bytes(admin_client, ready_recipes, redis_conn):
    recipe = ready_recipes["sale-banner"]
    data = preview_form(recipe, text_overlay='{"text": "30% OFF", "position": "top-left"}')
    # An output added in the form but not saved is previewed too.
    n = recipe.outputs.count()
    data |= {
        "outputs-TOTAL_FORMS": str(n + 1),
        f"outputs-{n}-position": "9",
        f"outputs-{n}-name": "square",
        f"outputs-{n}-width": "400",
        f"outputs-{n}-height": "400",
        f"outputs-{n}-fit": "pad",
        f"outputs-{n}-format": "png",
        f"outputs-{n}-quality": "",
        f"outputs-{n}-background": "#ffffff",
    }
    response = admin_client.post(PREVIEW_URL, data)
    assert response.status_code == 200, response.content.decode()[:1000]
    outputs = rendered_outputs(response.content.decode())
    assert list(outputs) == ["banner", "banner-webp", "banner-small", "banner-small-webp", "square"]
    assert outputs["banner"][0].size == (1200, 628) and outputs["banner"][0].format == "JPEG"
    assert outputs["square"][0].size == (400, 400) and outputs["square"][0].format == "PNG"
    # Nothing was saved, versioned or queued.
    recipe.refresh_from_db()
    assert recipe.version == 1 and RecipeVersion.objects.filter(recipe=recipe).count() == 1
    assert (
        recipe.outputs.count() == n and recipe.steps.get(operation="text_overlay").params["text"] == "20% OFF"
    )
    assert not Task.objects.exists() and redis_conn.keys("rq:queue:*") == []


def test_the_unsaved_params_change_the_preview(admin_client, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    saved = rendered_outputs(admin_client.post(PREVIEW_URL, preview_form(recipe)).content.decode())
    edited = rendered_outputs(
        admin_client.post(
            PREVIEW_URL, preview_form(recipe, text_overlay='{"text": "BUY 1 GET 1", "position": "bottom"}')
        ).content.decode()
    )
    assert saved["banner"][0].tobytes() != edited["banner"][0].tobytes()


def test_a_step_sent_to_a_provider_is_previewed_locally_and_says_so(admin_client, ready_recipes):
    provider = Provider.objects.create(
        name="remove.bg", slug="removebg", kind="removebg", base_url="https://api.remove.bg"
    )
    recipe = ready_recipes["ecommerce-pack"]
    recipe.steps.filter(operation="remove_background").update(provider=provider)
    data = preview_form(recipe)
    data["steps-0-provider"] = str(provider.pk)
    response = admin_client.post(PREVIEW_URL, data)
    html = response.content.decode()
    assert response.status_code == 200, html[:1000]
    assert "runs at remove.bg in real tasks; previewed locally" in html
    assert "no provider was called or paid" in html
    outputs = rendered_outputs(html)
    assert outputs["zoom"][0].size == (2000, 2000) and len(outputs) == 6


def test_invalid_params_are_reported_as_saving_would_and_nothing_renders(admin_client, ready_recipes):
    response = admin_client.post(
        PREVIEW_URL, preview_form(ready_recipes["sale-banner"], watermark='{"opacity": 3}')
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "Step, params (row 3)" in html and "opacity" in html
    assert "data:image" not in html


def test_a_step_that_refuses_the_sample_names_the_step_and_reason(admin_client, ready_recipes):
    # if_unsuitable back to its default, refuse
    data = preview_form(ready_recipes["ecommerce-pack"], sample="", remove_background="{}")
    data["preview_file"] = SimpleUploadedFile("street.jpg", jpeg(photo(400, 300)))
    html = admin_client.post(PREVIEW_URL, data).content.decode()
    assert "At step remove_background:" in html and "plain" in html


def test_a_sample_kept_whole_says_so_and_why(admin_client, ready_recipes):
    """The ready E-commerce pack keeps a busy photo whole; the preview says so with the step's reason."""
    data = preview_form(ready_recipes["ecommerce-pack"], sample="")
    data["preview_file"] = SimpleUploadedFile("street.jpg", jpeg(photo(400, 300)))
    html = admin_client.post(PREVIEW_URL, data).content.decode()
    assert "Kept whole — background not removed" in html and "plain" in html
    # The 2000×2000 zoom would enlarge the 400×300 sample 5× or more: not made, and the preview says why.
    assert len(rendered_outputs(html)) == 4
    assert "Photo too small: zoom 2000×2000 not made" in html


def test_an_uploaded_sample_is_used(admin_client, ready_recipes):
    data = preview_form(ready_recipes["sale-banner"], sample="")
    data["preview_file"] = SimpleUploadedFile("mine.jpg", jpeg(product_on_white(500, 400, seed=4)))
    html = admin_client.post(PREVIEW_URL, data).content.decode()
    assert "mine.jpg" in html and "500×400" in html and len(rendered_outputs(html)) == 4


@pytest.fixture
def recipe_editor(db, django_user_model, team):
    """A staff member of the Marketing team who may edit recipes (steps and outputs included), not a superuser."""
    user = django_user_model.objects.create_user("ada", password="pw-ada-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="dashboard",
            codename__regex=r"^(view|change|add|delete)_recipe(step|output)?$",
        )
    )
    team.members.add(user)
    client = Client()
    client.force_login(user)
    return client


def test_a_campaign_source_can_be_the_sample_but_only_from_the_editors_teams(
    recipe_editor, campaign, ready_recipes, marketer_client
):
    marketer_client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"files": [upload("ours.jpg", jpeg(product_on_white(360, 300, seed=5)))]},
    )
    theirs = Campaign.objects.create(name="Their launch", team=Team.objects.create(name="Partners"))
    other = SourceImage.objects.create(
        campaign=theirs, sha256="b" * 64, display_name="theirs.jpg", file=SourceImage.objects.get().file.name,
        width=360, height=300, format="JPEG", byte_size=1,
    )  # fmt: skip
    ours = SourceImage.objects.get(display_name="ours.jpg")
    recipe = ready_recipes["sale-banner"]
    form = recipe_editor.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk])).content.decode()
    assert f'value="source-{ours.pk}"' in form and f'value="source-{other.pk}"' not in form

    html = recipe_editor.post(PREVIEW_URL, preview_form(recipe, sample=f"source-{ours.pk}")).content.decode()
    assert "ours.jpg" in html and len(rendered_outputs(html)) == 4
    refused = recipe_editor.post(PREVIEW_URL, preview_form(recipe, sample=f"source-{other.pk}"))
    assert refused.status_code == 400 and "Pick a sample image" in refused.content.decode()


def test_the_preview_needs_a_staff_login_permission_and_post(
    client, marketer_client, admin_client, ready_recipes
):
    data = preview_form(ready_recipes["sale-banner"])
    assert client.post(PREVIEW_URL, data).status_code == 302  # to the admin login
    assert marketer_client.post(PREVIEW_URL, data).status_code == 302  # not staff
    assert admin_client.get(PREVIEW_URL).status_code == 405


def test_a_staff_member_who_cannot_change_recipes_gets_403(db, django_user_model, ready_recipes):
    viewer = django_user_model.objects.create_user("vic", password="pw-vic-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_recipe"))
    client = Client()
    client.force_login(viewer)
    assert client.post(PREVIEW_URL, preview_form(ready_recipes["sale-banner"])).status_code == 403


def test_a_new_recipe_is_previewed_from_the_add_form(admin_client, db):
    data = {
        "name": "Square",
        "slug": "square",
        "preview_sample": "bundled-ball",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-0-position": "1",
        "steps-0-operation": "enhance",
        "steps-0-params": "{}",
        "outputs-TOTAL_FORMS": "1",
        "outputs-INITIAL_FORMS": "0",
        "outputs-0-position": "1",
        "outputs-0-name": "square",
        "outputs-0-width": "300",
        "outputs-0-height": "300",
        "outputs-0-fit": "fill",
        "outputs-0-format": "webp",
        "outputs-0-quality": "",
        "outputs-0-background": "#ffffff",
    }
    response = admin_client.post(PREVIEW_URL, data)
    assert response.status_code == 200, response.content.decode()[:1000]
    assert rendered_outputs(response.content.decode())["square"][0].size == (300, 300)
    assert "add" in admin_client.get(reverse("admin:dashboard_recipe_add")).content.decode()


def test_rows_the_editor_cannot_change_are_previewed_as_saved(db, django_user_model, ready_recipes):
    """Without rights on the inlines the admin shows no step or output fields; the saved ones are used."""
    editor = django_user_model.objects.create_user("eve", password="pw-eve-123", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["change_recipe", "view_recipe"]))
    client = Client()
    client.force_login(editor)
    recipe = ready_recipes["sale-banner"]
    data = {"_preview_recipe": str(recipe.pk), "preview_sample": "bundled-box", "name": recipe.name}
    html = client.post(PREVIEW_URL, data).content.decode()
    assert list(rendered_outputs(html)) == ["banner", "banner-webp", "banner-small", "banner-small-webp"]

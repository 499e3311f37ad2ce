"""Who may do what: marketers act on their team's campaigns only; recipes, providers and the queue pages
each need their own permission, granted through the role groups setup installs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from dashboard.management.commands.pixelmill_setup import install_role_groups

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(db):
    return {group.name: group for group in install_role_groups()}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_marketer_cannot_open_the_admin_at_all(marketer_client, ready_recipes):
    recipe = ready_recipes["ecommerce-pack"]
    response = marketer_client.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert "Recipes &amp; admin" not in marketer_client.get(reverse("campaign-list")).content.decode()


def test_staff_without_a_role_may_not_see_or_change_recipes_or_providers(django_user_model, ready_recipes):
    staff = django_user_model.objects.create_user("sam", password="pw-sam-12345", is_staff=True)
    client = logged_in(staff)
    recipe = ready_recipes["ecommerce-pack"]
    assert client.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk])).status_code == 403
    assert client.get(reverse("admin:dashboard_provider_add")).status_code == 403
    assert client.get(reverse("django_rq:home")).status_code == 403


def test_recipe_editors_configure_recipes_and_providers_but_not_the_queues(
    django_user_model, ready_recipes, groups
):
    editor = django_user_model.objects.create_user("rita", password="pw-rita-12345", is_staff=True)
    editor.groups.add(groups["Recipe editors"])
    client = logged_in(editor)
    recipe = ready_recipes["ecommerce-pack"]
    assert client.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk])).status_code == 200
    assert client.get(reverse("admin:dashboard_provider_add")).status_code == 200
    assert client.get(reverse("django_rq:home")).status_code == 403
    assert client.get(reverse("admin:dashboard_webhookdelivery_changelist")).status_code == 403


def test_operators_see_the_queues_and_deliveries_but_cannot_touch_recipes(
    django_user_model, ready_recipes, groups
):
    operator = django_user_model.objects.create_user("otto", password="pw-otto-12345", is_staff=True)
    operator.groups.add(groups["Operators"])
    client = logged_in(operator)
    assert client.get(reverse("django_rq:home")).status_code == 200
    assert client.get(reverse("admin:dashboard_webhookdelivery_changelist")).status_code == 200
    recipe = ready_recipes["ecommerce-pack"]
    assert client.get(reverse("admin:dashboard_recipe_change", args=[recipe.pk])).status_code == 403


def test_setup_installs_the_groups_once(groups):
    install_role_groups()
    assert set(Group.objects.values_list("name", flat=True)) == {"Recipe editors", "Operators"}
    assert groups["Recipe editors"].permissions.filter(codename="change_provider").exists()


def test_every_state_changing_page_refuses_a_get_or_a_post_without_csrf(marketer, campaign):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    for name in ("campaign-upload", "campaign-import-urls", "campaign-process", "campaign-webhook",
                 "campaign-resume-remote", "campaign-generate"):  # fmt: skip
        url = reverse(name, args=[campaign.pk])
        assert client.get(url).status_code == 405, name
        assert client.post(url).status_code == 403, name
    for name in ("campaign-requeue-failed", "campaign-url-imports-retry"):
        url = reverse(name, args=[campaign.pk])
        assert client.get(url).status_code == 200, f"{name} confirms on GET"
        assert client.post(url).status_code == 403, name

"""Install the ready recipes, the default team, the role groups and a first admin user; safe to run again."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from dashboard.models import Team
from dashboard.ready_recipes import install_ready_recipes, upgrade_ready_recipes

# Marketers need no group: being in a team lets them see and act on its campaigns, and nothing else.
# Staff users get what their group grants in the admin; a superuser has everything.
ROLE_PERMISSIONS = {
    "Recipe editors": [
        f"{action}_{model}"
        for model in ("recipe", "recipestep", "recipeoutput", "provider")
        for action in ("add", "change", "delete", "view")
    ]
    + ["view_recipeversion"],
    # Operators also see failed logins and unlock a locked-out user by deleting its access attempt (django-axes).
    "Operators": [
        "view_queues", "view_webhookdelivery", "change_webhookdelivery", "view_task", "view_team",
        "view_accessattempt", "delete_accessattempt", "view_accesslog", "view_accessfailurelog",
    ],
}  # fmt: skip


def install_role_groups() -> list[Group]:
    groups = []
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label__in=["dashboard", "axes"], codename__in=codenames
            )
        )
        groups.append(group)
    return groups


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options) -> None:
        for recipe in install_ready_recipes():
            self.stdout.write(f"Installed recipe “{recipe.name}”.")
        for recipe in upgrade_ready_recipes():
            self.stdout.write(
                f"Updated recipe “{recipe.name}” to what Pixelmill now ships (version {recipe.version})."
            )
        team, _ = Team.objects.get_or_create(name="Marketing")
        install_role_groups()

        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(
            username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password
        )
        team.members.add(user)
        if generated:
            # Printed once; also kept (owner-only) beside the database so it is not lost with the terminal.
            note = settings.DATA_DIR / "initial-admin-password.txt"
            note.write_text(f"{username}\n{password}\n")
            note.chmod(0o600)
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user “{username}” with password: {password}  (saved to {note})"
                )
            )
        else:
            self.stdout.write(f"Created admin user “{username}” from DJANGO_SUPERUSER_USERNAME/PASSWORD.")

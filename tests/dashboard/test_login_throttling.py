"""Login throttling (django-axes): five wrong passwords for one user name from one address lock that pair out of
both login pages, with a page that says until when and who can unlock it; other people and other addresses
log in as before; the lock lifts after the cool-off, when an operator deletes it in the admin, or with
`manage.py axes_reset_username`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from dashboard.management.commands.pixelmill_setup import install_role_groups
from tests.dashboard.pages import visible_text

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]
PASSWORDS = {"maria": "pw-maria-123", "bob": "pw-bob-12345"}


@pytest.fixture(autouse=True)
def throttled(settings, marketer, django_user_model):
    """As in production: the suite runs with django-axes off (tests/conftest.py). Both people are staff, so
    that the right password opens the admin's login page as well as the dashboard's."""
    settings.AXES_ENABLED = True
    marketer.is_staff = True
    marketer.save()
    django_user_model.objects.create_user("bob", password=PASSWORDS["bob"], is_staff=True)


def log_in(client: Client, page: str, username: str, password: str | None = None):
    return client.post(page, {"username": username, "password": password or PASSWORDS[username]})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def lock_out(client: Client, page: str, username: str = "maria") -> list[int]:
    return [log_in(client, page, username, f"wrong-{n}").status_code for n in range(5)]


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_five_wrong_passwords_lock_that_user_out_even_with_the_right_one_and_say_until_when(page):
    client = Client()
    assert lock_out(client, page) == [200, 200, 200, 200, 429]
    response = log_in(client, page, "maria")
    assert response.status_code == 429 and not logged_in(client)
    until = timezone.localtime(AccessAttempt.objects.get().attempt_time + timedelta(minutes=15))
    text = visible_text(response.content.decode())
    assert (
        f"Logging in as “maria” from this computer is paused until {until:%H:%M} (in 15 minutes), "
        "after 5 wrong passwords." in text
    )
    assert "Until then even the right password is refused." in text
    assert "Ask a Pixelmill admin: they can unlock it at once." in text


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_other_people_and_other_addresses_still_log_in(page):
    assert lock_out(Client(), page)[-1] == 429
    colleague = Client()
    assert log_in(colleague, page, "bob").status_code == 302 and logged_in(colleague)
    at_home = Client(REMOTE_ADDR="203.0.113.9")
    assert log_in(at_home, page, "maria").status_code == 302 and logged_in(at_home)


def test_a_login_that_works_starts_the_count_again():
    client = Client()
    assert [log_in(client, LOGIN_PAGES[0], "maria", "typo").status_code for _ in range(4)] == [200] * 4
    assert log_in(client, LOGIN_PAGES[0], "maria").status_code == 302
    client.logout()
    assert [log_in(client, LOGIN_PAGES[0], "maria", "typo").status_code for _ in range(4)] == [200] * 4


def test_the_lock_lifts_by_itself_after_the_cool_off():
    client = Client()
    lock_out(client, LOGIN_PAGES[0])
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assert log_in(client, LOGIN_PAGES[0], "maria").status_code == 302 and logged_in(client)


def test_an_operator_unlocks_a_user_in_the_admin_after_a_confirmation(django_user_model):
    client = Client()
    lock_out(client, LOGIN_PAGES[1])
    operator = django_user_model.objects.create_user("otto", password="pw-otto-12345", is_staff=True)
    operator.groups.add(next(group for group in install_role_groups() if group.name == "Operators"))
    admin = Client()
    admin.force_login(operator)
    listing = visible_text(admin.get("/admin/axes/accessattempt/").content.decode())
    assert "maria" in listing and "127.0.0.1" in listing
    attempt = AccessAttempt.objects.get()
    delete = f"/admin/axes/accessattempt/{attempt.pk}/delete/"
    assert "Are you sure" in admin.get(delete).content.decode()
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    assert not AccessAttempt.objects.exists()
    assert log_in(client, LOGIN_PAGES[1], "maria").status_code == 302 and logged_in(client)


def test_manage_py_axes_reset_username_unlocks_a_user(capsys):
    client = Client()
    lock_out(client, LOGIN_PAGES[0])
    call_command("axes_reset_username", "maria")
    assert "1 attempts removed" in capsys.readouterr().out
    assert log_in(client, LOGIN_PAGES[0], "maria").status_code == 302 and logged_in(client)


def test_behind_a_proxy_the_address_it_saw_counts_not_one_a_client_made_up(settings):
    """The proxy appends the address it saw to X-Forwarded-For; anything before it came from the client."""
    settings.PIXELMILL_BEHIND_PROXY = True
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    attacker = Client(**proxy, HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert lock_out(attacker, LOGIN_PAGES[0])[-1] == 429
    forged = Client(**proxy, HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.5")
    assert log_in(forged, LOGIN_PAGES[0], "maria").status_code == 429
    office = Client(**proxy, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert log_in(office, LOGIN_PAGES[0], "maria").status_code == 302 and logged_in(office)

"""The campaign's Webhook box (team-only, POST with CSRF, validated URL, secret and recent deliveries) and the
admin's read-only deliveries with "Send again"."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rq.job import Job

from dashboard.models import Campaign, Team, WebhookDelivery
from jobs.webhooks import delivery_job_id

HOOK = "https://hooks.example.com/pixelmill"


def post_webhook(client: Client, campaign: Campaign, **data):
    return client.post(reverse("campaign-webhook", args=[campaign.pk]), data)


def make_delivery(campaign: Campaign, run: int, **fields) -> WebhookDelivery:
    defaults = {
        "url": HOOK,
        "payload": {"id": f"evt_{run}", "type": "campaign.run.finished", "data": {"run": run}},
    }
    return WebhookDelivery.objects.create(campaign=campaign, run_number=run, **{**defaults, **fields})


def test_a_marketer_sets_the_webhook_and_then_sees_its_signing_secret(marketer_client, campaign):
    assert "Signing secret" not in marketer_client.get(campaign.get_absolute_url()).content.decode()
    response = post_webhook(marketer_client, campaign, webhook_url=HOOK)
    assert response.status_code == 302 and response.url == campaign.get_absolute_url() + "#webhook"
    campaign.refresh_from_db()
    assert campaign.webhook_url == HOOK and campaign.webhook_secret.startswith("whsec_")
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "Webhook saved" in page and HOOK in page
    assert "Signing secret" in page and campaign.webhook_secret in page


def test_saving_another_url_keeps_the_secret_and_remove_turns_the_webhook_off(marketer_client, campaign):
    post_webhook(marketer_client, campaign, webhook_url=HOOK)
    secret = Campaign.objects.get(pk=campaign.pk).webhook_secret
    post_webhook(marketer_client, campaign, webhook_url="https://other.example.com/in")
    campaign.refresh_from_db()
    assert campaign.webhook_url == "https://other.example.com/in" and campaign.webhook_secret == secret
    post_webhook(marketer_client, campaign, webhook_url=HOOK, action="clear")
    campaign.refresh_from_db()
    assert campaign.webhook_url == ""
    post_webhook(marketer_client, campaign, webhook_url=HOOK)
    post_webhook(marketer_client, campaign, webhook_url="")  # an empty field also turns it off
    assert Campaign.objects.get(pk=campaign.pk).webhook_url == ""


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://files.example.com/in", "http:// or https://"),
        ("not a url", "http:// or https://"),
        ("https://user:secret@hooks.example.com/in", "user name and password"),
        ("http://10.0.0.7/hook", "private"),
        ("http://localhost:8080/hook", "this server"),
        ("http://169.254.169.254/latest/", "link-local"),
        # IPv4 inside IPv6: IPv4-compatible, NAT64, 6to4 and Teredo are judged by the address they carry.
        ("http://[::127.0.0.1]/hook", "this server"),
        ("http://[::a9fe:a9fe]/latest/", "link-local"),
        ("http://[64:ff9b::7f00:1]/hook", "this server"),
        ("http://[64:ff9b:1::a00:7]/hook", "local-use NAT64"),
        ("http://[2002:a00:7::1]/hook", "private"),
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook", "this server"),
    ],
)
def test_a_bad_url_is_refused_with_a_reason_and_changes_nothing(marketer_client, campaign, url, reason):
    campaign.webhook_url = HOOK
    campaign.save()
    response = post_webhook(marketer_client, campaign, webhook_url=url)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).webhook_url == HOOK


def test_another_teams_user_gets_404_and_changes_nothing(campaign, django_user_model):
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    assert post_webhook(client, campaign, webhook_url="https://evil.example.com/").status_code == 404
    assert post_webhook(client, campaign, action="clear").status_code == 404
    assert Campaign.objects.get(pk=campaign.pk).webhook_url == ""


def test_the_webhook_form_is_post_only_and_needs_the_csrf_token(marketer, campaign):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    url = reverse("campaign-webhook", args=[campaign.pk])
    assert client.get(url).status_code == 405
    assert client.post(url, {"webhook_url": HOOK}).status_code == 403
    assert Campaign.objects.get(pk=campaign.pk).webhook_url == ""
    # With the token from the page, the same POST goes through.
    client.get(campaign.get_absolute_url())
    token = client.cookies["csrftoken"].value
    assert client.post(url, {"webhook_url": HOOK, "csrfmiddlewaretoken": token}).status_code == 302


def test_logged_out_visitors_are_sent_to_login(client, campaign):
    response = client.post(reverse("campaign-webhook", args=[campaign.pk]), {"webhook_url": HOOK})
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_campaign_page_lists_the_last_five_deliveries_with_their_state(marketer_client, campaign):
    for run in range(1, 7):
        make_delivery(campaign, run)
    WebhookDelivery.objects.filter(run_number=6).update(
        state="failed", attempts=8, last_status_code=500, last_error="The receiver answered HTTP 500."
    )
    WebhookDelivery.objects.filter(run_number=5).update(state="delivered", attempts=1, last_status_code=200)
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    box = page[page.index('id="webhook"') :]
    assert [f"#{run}" in box for run in range(1, 7)] == [False, True, True, True, True, True]
    assert "The receiver answered HTTP 500." in box and "HTTP 200" in box
    assert "Delivered" in box and "Failed" in box and "Pending" in box


# --- admin -----------------------------------------------------------------------------------------------------


def test_the_admin_shows_a_delivery_read_only_with_its_payload_and_tries(admin_client, campaign):
    delivery = make_delivery(
        campaign,
        3,
        state="failed",
        attempts=2,
        log=[
            {"attempt": 1, "time": "2026-01-01T00:00:00+00:00", "status": 503, "error": "HTTP 503", "duration_ms": 12},
            {"attempt": 2, "time": "2026-01-01T00:00:10+00:00", "status": None, "error": "refused", "duration_ms": 1},
        ],
    )  # fmt: skip
    listing = admin_client.get(reverse("admin:dashboard_webhookdelivery_changelist")).content.decode()
    assert "Spring sale" in listing and "Send again" in listing
    detail = admin_client.get(reverse("admin:dashboard_webhookdelivery_change", args=[delivery.pk]))
    page = detail.content.decode()
    assert detail.status_code == 200 and "evt_3" in page and "HTTP 503" in page and "refused" in page
    assert 'name="_save"' not in page, "deliveries are read-only"
    assert admin_client.get(reverse("admin:dashboard_webhookdelivery_add")).status_code == 403


def test_send_again_confirms_first_then_resets_the_delivery_and_enqueues_it(
    admin_client, campaign, redis_conn, django_capture_on_commit_callbacks
):
    delivery = make_delivery(campaign, 1, state="failed", attempts=8, last_error="HTTP 500")
    url = reverse("admin:dashboard_webhookdelivery_changelist")
    form = {"action": "send_again", "_selected_action": [delivery.pk]}
    confirm = admin_client.post(url, form)
    assert confirm.status_code == 200 and "Yes, send again" in confirm.content.decode()
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == "failed", (
        "nothing happens before the confirmation"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form, "post": "yes"})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at is not None) == ("pending", 0, True)
    assert Job.fetch(delivery_job_id(delivery.pk, 1), connection=redis_conn).get_status() == "queued"

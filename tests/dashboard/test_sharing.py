"""Share links: signed tokens naming a row, anonymous access to approved outputs only, expiry, revocation
(confirmed first), team isolation and CSRF on every change."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import httpx
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.models import Output, ShareLink, Team
from tests.dashboard.pages import find_all, visible_text
from tests.factories import make_approved_outputs


def approve_banners(campaign) -> None:
    Output.objects.filter(task__campaign=campaign, name="banner").record_review("approved", None)


def test_a_token_is_signed_and_names_its_row(banner_campaign, marketer):
    link = ShareLink.issue(banner_campaign, marketer, days=7)
    assert ShareLink.objects.from_token(link.token) == link
    pk_and_nonce, signature = link.token.rsplit(":", 1)
    assert ShareLink.objects.from_token(f"{pk_and_nonce}:{signature[::-1]}") is None
    assert ShareLink.objects.from_token(f"{link.pk}.{'x' * 32}:{signature}") is None
    other = ShareLink.issue(banner_campaign, marketer, days=7)
    assert ShareLink.objects.from_token(link.token.replace(f"{link.pk}.", f"{other.pk}.", 1)) is None
    assert ShareLink.objects.from_token("garbage") is None


def test_a_marketer_creates_a_link_that_shows_on_the_campaign_page(banner_campaign, marketer_client):
    response = marketer_client.post(
        reverse("share-link-create", args=[banner_campaign.pk]), {"days": "7", "label": "Agency"}
    )
    assert response.url == banner_campaign.get_absolute_url() + "#share"
    link = ShareLink.objects.get()
    assert link.label == "Agency" and link.is_active
    assert timedelta(days=6, hours=23) < link.expires_at - timezone.now() <= timedelta(days=7)
    page = marketer_client.get(banner_campaign.get_absolute_url()).content.decode()
    assert f"http://testserver{link.get_absolute_url()}" in page
    assert "Nothing is approved yet" in page


def test_someone_without_an_account_sees_and_downloads_only_the_approved_outputs(banner_campaign, marketer):
    approve_banners(banner_campaign)
    link = ShareLink.issue(banner_campaign, marketer, days=1)
    anonymous = Client()
    page = anonymous.get(link.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    assert "Download 2 images (ZIP)" in html and banner_campaign.name in html
    approved = Output.objects.filter(review="approved")
    for output in approved:
        thumbnail = reverse("share-link-thumbnail", args=[link.token, output.pk])
        assert thumbnail in html and anonymous.get(thumbnail).status_code == 200
    pending = Output.objects.filter(review="pending").first()
    assert anonymous.get(reverse("share-link-thumbnail", args=[link.token, pending.pk])).status_code == 404

    response = anonymous.get(reverse("share-link-download", args=[link.token]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert set(archive.namelist()) == {
        "sale-banner/banner/shoe.jpg",
        "sale-banner/banner/bag.jpg",
        "manifest.csv",
    }
    link.refresh_from_db()
    assert link.download_count == 1 and link.last_downloaded_at is not None
    # The campaign itself still needs an account.
    assert anonymous.get(banner_campaign.get_absolute_url()).status_code == 302


def test_share_pages_keep_the_token_out_of_referrers_caches_and_search(banner_campaign, marketer):
    link = ShareLink.issue(banner_campaign, marketer, days=1)
    response = Client().get(link.get_absolute_url())
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "private, no-store"
    assert "noindex" in response["X-Robots-Tag"]


PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


@pytest.mark.django_db(transaction=True)
def test_every_answer_under_share_keeps_the_token_private(
    live_server, campaign, marketer, ready_recipes, monkeypatch
):
    """Not only the pages that went well: a 404 or an error under a working token carries the token in its
    address just the same, so it must not leak through a Referer, a shared cache or a search engine."""
    [approved] = make_approved_outputs(campaign, ready_recipes["sale-banner"], 1, reviewer=marketer)
    link = ShareLink.issue(campaign, marketer, days=7)
    revoked = ShareLink.issue(campaign, marketer, days=7)
    revoked.revoke(marketer)
    page = link.get_absolute_url()
    thumbnail = reverse("share-link-thumbnail", args=[link.token, approved.pk])
    download = reverse("share-link-download", args=[link.token])
    with httpx.Client(base_url=live_server.url, timeout=20) as http:
        answers = {
            "page": http.get(page),
            "thumbnail": http.get(thumbnail),
            "zip": http.get(download),
            "unknown output": http.get(reverse("share-link-thumbnail", args=[link.token, approved.pk + 999])),
            "unknown path": http.get(f"{page}nothing-here/"),
            "post": http.post(page),
            "revoked": http.get(revoked.get_absolute_url()),
            "made up": http.get("/share/garbage/"),
        }
        monkeypatch.setattr("dashboard.views.sharing.campaign_zip", lambda *args, **kwargs: 1 / 0)
        answers["error"] = http.get(download)
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "page": 200, "thumbnail": 200, "zip": 200, "unknown output": 404, "unknown path": 404, "post": 403,
        "revoked": 410, "made up": 404, "error": 500,
    }  # fmt: skip
    for name, response in answers.items():
        assert {header: response.headers.get(header) for header in PRIVATE_HEADERS} == PRIVATE_HEADERS, name


def test_an_expired_link_answers_410_with_a_way_forward(banner_campaign, marketer):
    approve_banners(banner_campaign)
    link = ShareLink.issue(banner_campaign, marketer, days=1)
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    anonymous = Client()
    response = anonymous.get(link.get_absolute_url())
    assert response.status_code == 410 and "It expired on" in response.content.decode()
    assert anonymous.get(reverse("share-link-download", args=[link.token])).status_code == 410
    assert (
        anonymous.get(
            reverse("share-link-thumbnail", args=[link.token, Output.objects.first().pk])
        ).status_code
        == 410
    )


def test_revoking_asks_first_then_stops_the_link_at_once(banner_campaign, marketer, marketer_client):
    approve_banners(banner_campaign)
    link = ShareLink.issue(banner_campaign, marketer, days=30)
    url = reverse("share-link-revoke", args=[link.pk])
    assert "Yes, revoke" in marketer_client.get(url).content.decode()
    assert Client().get(link.get_absolute_url()).status_code == 200  # GET only asks
    response = marketer_client.post(url)
    assert response.url == banner_campaign.get_absolute_url() + "#share"
    link.refresh_from_db()
    assert link.is_revoked and link.revoked_by == marketer
    anonymous = Client()
    gone = anonymous.get(link.get_absolute_url())
    assert gone.status_code == 410 and "revoked" in gone.content.decode()
    assert anonymous.get(reverse("share-link-download", args=[link.token])).status_code == 410
    assert "already revoked" in marketer_client.post(url, follow=True).content.decode()


def test_share_links_are_the_teams_own_and_change_only_by_post_with_csrf(
    banner_campaign, marketer, django_user_model
):
    link = ShareLink.issue(banner_campaign, marketer, days=7)
    outsider = django_user_model.objects.create_user("otto", password="pw-otto-123")
    Team.objects.create(name="Partners").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    assert (
        client.post(reverse("share-link-create", args=[banner_campaign.pk]), {"days": "7"}).status_code == 404
    )
    assert client.get(reverse("share-link-revoke", args=[link.pk])).status_code == 404
    assert client.post(reverse("share-link-revoke", args=[link.pk])).status_code == 404

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(marketer)
    assert (
        strict.post(reverse("share-link-create", args=[banner_campaign.pk]), {"days": "7"}).status_code == 403
    )
    assert strict.post(reverse("share-link-revoke", args=[link.pk])).status_code == 403
    assert strict.get(reverse("share-link-create", args=[banner_campaign.pk])).status_code == 405
    link.refresh_from_db()
    assert link.is_active and ShareLink.objects.count() == 1


def test_a_link_cannot_last_longer_than_the_offered_choices(banner_campaign, marketer_client):
    response = marketer_client.post(
        reverse("share-link-create", args=[banner_campaign.pk]), {"days": "3650"}, follow=True
    )
    assert "Pick how long the link should work" in response.content.decode()
    assert not ShareLink.objects.exists()


def test_an_altered_or_made_up_link_explains_itself_like_an_expired_one(banner_campaign, marketer, db):
    link = ShareLink.issue(banner_campaign, marketer, days=1)
    altered = link.get_absolute_url()[:-6] + "xxxxx/"
    for url in (altered, "/share/garbage/", "/share/garbage/download.zip"):
        response = Client().get(url)
        assert response.status_code == 404, url
        page = response.content.decode()
        assert "This link no longer works" in page and "copied whole" in page, url
        assert response["Cache-Control"] == "private, no-store"


def test_an_unknown_page_is_a_pixelmill_page_not_a_bare_one(marketer_client, settings):
    settings.DEBUG = False
    response = marketer_client.get("/campaigns/999999/")
    assert response.status_code == 404
    assert "Nothing here" in response.content.decode() and "Back to campaigns" in response.content.decode()


def shared_thumbnails(html: str, link) -> set[int]:
    """The outputs a share page shows, by primary key."""
    prefix = reverse("share-link-thumbnail", args=[link.token, 0]).removesuffix("0.webp")
    return {int(img.attrs["src"].removeprefix(prefix).removesuffix(".webp")) for img in find_all(html, "img")}


def test_the_share_page_shows_every_approved_picture_page_by_page_with_the_zip_on_each(
    campaign, marketer, ready_recipes
):
    """The report: 24 of 43 approved shown, and no way to see the rest."""
    approved = make_approved_outputs(campaign, ready_recipes["sale-banner"], 43, reviewer=marketer)
    waiting = make_approved_outputs(campaign, ready_recipes["social-ads-pack"], 2)
    Output.objects.filter(pk__in=[output.pk for output in waiting]).record_review("pending", None)
    link = ShareLink.issue(campaign, marketer, days=7)
    anonymous = Client()

    url = link.get_absolute_url()
    pages = [anonymous.get(url, {"page": number}).content.decode() for number in (1, 2)]
    shown = [shared_thumbnails(html, link) for html in pages]
    assert shown[0] | shown[1] == {output.pk for output in approved}
    assert [len(pks) for pks in shown] == [24, 19]
    for html, expected in zip(
        pages, ["1–24 of 43 approved images", "25–43 of 43 approved images"], strict=True
    ):
        assert expected in visible_text(html)
        assert "Download 43 images (ZIP)" in visible_text(html), (
            "the ZIP of every approved picture, on each page"
        )

    first_page = anonymous.get(url).content.decode()
    assert [a.text for a in find_all(first_page, "a", href="?page=2")] == ["Next →"]
    last_page = anonymous.get(url, {"page": 2}).content.decode()
    assert [a.text for a in find_all(last_page, "a", href="?page=1")] == ["← Previous"]
    assert shared_thumbnails(anonymous.get(url, {"page": "99"}).content.decode(), link) == shared_thumbnails(
        last_page, link
    ), "a page past the end shows the last one"

    archive = zipfile.ZipFile(
        io.BytesIO(
            b"".join(anonymous.get(reverse("share-link-download", args=[link.token])).streaming_content)
        )
    )
    assert len(set(archive.namelist()) - {"manifest.csv"}) == 43

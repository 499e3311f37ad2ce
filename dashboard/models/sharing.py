"""Share links: a campaign's approved outputs for someone without an account, until expiry or revocation."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.db import models
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, get_random_string

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from dashboard.models.campaigns import Campaign


class ShareLinkQuerySet(models.QuerySet["ShareLink"]):
    def active(self) -> ShareLinkQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())

    def from_token(self, token: str) -> ShareLink | None:
        """The link a URL token names, if the signature holds and the secret matches; expired or not."""
        try:
            value = signing.Signer(salt=ShareLink.SALT).unsign(token)
        except signing.BadSignature:
            return None
        pk, _, nonce = value.partition(".")
        link = self.select_related("campaign").filter(pk=int(pk)).first() if pk.isdigit() else None
        if link is None or not constant_time_compare(link.nonce, nonce):
            return None
        return link


class ShareLink(models.Model):
    """Lets someone without an account download a campaign's approved outputs until it expires or is revoked.

    The URL carries the row's id and a random secret, signed with the site's secret key: a forged or
    altered token fails before the database is asked, and a copy of the database alone cannot mint one.
    """

    SALT = "pixelmill.share-link"

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="share_links")
    nonce = models.CharField(max_length=32, editable=False)
    label = models.CharField(max_length=100, blank=True, help_text="Who the link is for, e.g. “Agency”.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    download_count = models.PositiveIntegerField(default=0)
    last_downloaded_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Share link {self.pk} of {self.campaign}"

    @classmethod
    def issue(cls, campaign: Campaign, user: User, *, days: int, label: str = "") -> ShareLink:
        return cls.objects.create(
            campaign=campaign,
            nonce=get_random_string(32),
            label=label,
            created_by=user,
            expires_at=timezone.now() + timedelta(days=days),
        )

    @property
    def token(self) -> str:
        return signing.Signer(salt=self.SALT).sign(f"{self.pk}.{self.nonce}")

    def get_absolute_url(self) -> str:
        return reverse("share-link", args=[self.token])

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired

    def revoke(self, user: User) -> bool:
        """Stop the link working at once; False when it already was revoked."""
        now = timezone.now()
        revoked = ShareLink.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=user
        )
        if revoked:
            self.revoked_at, self.revoked_by = now, user
        return bool(revoked)

    def record_download(self) -> None:
        ShareLink.objects.filter(pk=self.pk).update(
            download_count=F("download_count") + 1, last_downloaded_at=timezone.now()
        )

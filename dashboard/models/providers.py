"""AI image providers the workers may call, and the results of their calls kept so nobody pays twice."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import models

from jobs.providers import ProviderConfig, ProviderConfigError, batches, config_from_fields


class Provider(models.Model):
    """An AI image API the workers may call; the key stays in the environment, never in the database."""

    class Kind(models.TextChoices):
        PIXELPANDA = "pixelpanda", "PixelPanda-style REST"
        REMOVEBG = "removebg", "remove.bg"
        PHOTOROOM = "photoroom", "Photoroom"
        REMBG = "rembg", "Self-hosted rembg server"
        FAL = "fal", "fal queue (text-to-image)"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(
        max_length=300,
        help_text="For example https://api.remove.bg, https://sdk.photoroom.com, https://queue.fal.run.",
    )
    api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        help_text="Name of the environment variable that holds the key, e.g. REMOVEBG_API_KEY.",
    )
    requests_per_second = models.FloatField(default=5.0, help_text="Shared by every worker.")
    concurrency = models.PositiveSmallIntegerField(default=4, help_text="Requests in flight at once, in all.")
    timeout_seconds = models.FloatField(default=60.0)
    price_per_call = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        default=0,
        help_text="What one successful call costs (fal: one generated image); used for estimates and budget caps.",
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Kind-specific settings, e.g. {"paths": {"upscale": "/api/v2/upscale"}} or {"model": "u2net"}.',
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            config_from_fields(self.slug, self.kind, self.base_url, self.options)
        except ProviderConfigError as error:
            raise ValidationError({"options": str(error)}) from error

    def config(self) -> ProviderConfig:
        """The frozen settings a worker builds its client from."""
        return ProviderConfig(
            slug=self.slug,
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            requests_per_second=self.requests_per_second,
            concurrency=self.concurrency,
            timeout_seconds=self.timeout_seconds,
            options=dict(self.options or {}),
        )

    @classmethod
    def batching_slugs(cls, slugs: Iterable[str]) -> set[str]:
        """Those of `slugs` whose provider is active and takes a chain of operations in one call."""
        return {
            provider.slug
            for provider in cls.objects.filter(slug__in=slugs, is_active=True)
            if batches(provider.kind, provider.options)
        }


class StepResult(models.Model):
    """A remote step's result, addressed by what was asked: a retry or re-run never pays twice."""

    key = models.CharField(
        max_length=64, unique=True, help_text="sha256 of input, operation, params, provider."
    )
    provider = models.CharField(max_length=50)
    operation = models.CharField(max_length=40)
    file = models.FileField(max_length=300)
    byte_size = models.PositiveBigIntegerField()
    request_id = models.CharField(max_length=200, blank=True)
    meta = models.JSONField(default=dict, blank=True, help_text="What the provider said about it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.operation} by {self.provider} ({self.key[:12]})"

"""Where a campaign's source images come from: uploads, prompts sent to a provider, and URLs."""

from __future__ import annotations

from django.db import models

from dashboard.models.providers import Provider


class SourceImage(models.Model):
    """One original image; the same bytes never appear twice in a campaign."""

    class Origin(models.TextChoices):
        UPLOAD = "upload", "Upload"
        ZIP = "zip", "Zip archive"
        URL = "url", "URL"
        GENERATED = "generated", "Generated"
        COMMAND = "command", "Command line"

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="sources")
    sha256 = models.CharField(max_length=64)
    display_name = models.CharField(max_length=255)
    file = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    byte_size = models.PositiveBigIntegerField()
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.UPLOAD)
    generation = models.ForeignKey(
        "Generation", null=True, blank=True, on_delete=models.SET_NULL, related_name="sources"
    )
    # Where a marketer clicked on the upright picture (0..1 from the left and the top); empty: detect it.
    focal_point_x = models.FloatField(null=True, blank=True)
    focal_point_y = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "sha256"], name="unique_source_bytes_per_campaign")
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def focal_point(self) -> tuple[float, float] | None:
        """The chosen subject point that smart crop and fill outputs centre on, or None to detect it."""
        if self.focal_point_x is None or self.focal_point_y is None:
            return None
        return (self.focal_point_x, self.focal_point_y)


class Generation(models.Model):
    """One prompt sent to a text-to-image provider; its images become the campaign's source images."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD, State.CANCELLED)

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="generations")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    seed = models.BigIntegerField(null=True, blank=True)
    image_size = models.CharField(max_length=40, default="square_hd")
    num_images = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    deferrals = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    request_id = models.CharField(
        max_length=200, blank=True, help_text="Set once submitted: never paid twice."
    )
    status_url = models.URLField(max_length=500, blank=True)
    response_url = models.URLField(max_length=500, blank=True)
    cancel_url = models.URLField(max_length=500, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    error_detail = models.TextField(
        blank=True, help_text="For staff: the type, message and traceback of a bug, under its error ref."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["campaign", "state"]), models.Index(fields=["request_id"])]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.state}): {self.prompt[:40]}"


class UrlImport(models.Model):
    """One image URL to bring into a campaign, downloaded by a worker rather than in the web request."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD)

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="url_imports")
    url = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    deferrals = models.PositiveSmallIntegerField(default=0, help_text="Kept for the shared reconciler.")
    max_attempts = models.PositiveSmallIntegerField(default=5)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    source = models.ForeignKey(
        SourceImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="url_imports"
    )
    duplicate = models.BooleanField(default=False, help_text="The campaign already held these bytes.")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["campaign", "state"]),
            models.Index(fields=["state", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"URL import {self.pk} ({self.state}): {self.url[:60]}"

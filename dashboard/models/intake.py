"""Where a campaign's source images come from: uploads, prompts sent to a provider, and URLs."""

from __future__ import annotations

from typing import Any

from django.db import models

from dashboard.models.attempts import AttemptLog, AttemptModel
from dashboard.models.providers import Provider
from jobs.queueing import DEFERRED_UPLOADS, GENERATIONS, URL_IMPORTS


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
    deferred_upload = models.ForeignKey(
        "DeferredUpload", null=True, blank=True, on_delete=models.SET_NULL, related_name="sources"
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
        indexes = [
            # A campaign's images in order: its newest one (an index probe; PostgreSQL otherwise walked the
            # primary key back from the newest image of all, 67 ms for a year-old campaign among 500,000
            # images) and the gallery's pages.
            models.Index(fields=["campaign", "id"], name="source_campaign_order"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def focal_point(self) -> tuple[float, float] | None:
        """The chosen subject point that smart crop and fill outputs centre on, or None to detect it."""
        if self.focal_point_x is None or self.focal_point_y is None:
            return None
        return (self.focal_point_x, self.focal_point_y)


class Generation(AttemptModel):
    """One prompt sent to a text-to-image provider; its images become the campaign's source images."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD, State.CANCELLED)
    job_kind = GENERATIONS
    attempt_log = AttemptLog("pixelmill.generation", "generation attempt finished", "generation")
    calls_providers = True

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="generations")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    seed = models.BigIntegerField(null=True, blank=True)
    image_size = models.CharField(max_length=40, default="square_hd")
    num_images = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    request_id = models.CharField(
        max_length=200, blank=True, help_text="Set once submitted: never paid twice."
    )
    status_url = models.URLField(max_length=500, blank=True)
    response_url = models.URLField(max_length=500, blank=True)
    cancel_url = models.URLField(max_length=500, blank=True)
    error_detail = models.TextField(
        blank=True, help_text="For staff: the type, message and traceback of a bug, under its error ref."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["campaign", "state"]), models.Index(fields=["request_id"])]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.state}): {self.prompt[:40]}"

    def mark_succeeded(self, attempt: int, **changes: Any) -> bool:
        return super().mark_succeeded(attempt, error_detail="", **changes)

    def log_context(self) -> dict[str, Any]:
        # tasks_created is given by the attempt that stores the images.
        return {"campaign": self.campaign_id, "request_id": self.request_id or None, "tasks_created": None}


class ImportState(models.TextChoices):
    """Where a worker's import stands (a URL, a deferred upload): the attempt states, with no cancel."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    DEAD = "dead", "Dead"


class UrlImport(AttemptModel):
    """One image URL to bring into a campaign, downloaded by a worker rather than in the web request."""

    State = ImportState
    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD)
    job_kind = URL_IMPORTS
    attempt_log = AttemptLog("pixelmill.url_imports", "url import finished", "url_import")

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="url_imports")
    url = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    source = models.ForeignKey(
        SourceImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="url_imports"
    )
    duplicate = models.BooleanField(default=False, help_text="The campaign already held these bytes.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["campaign", "state"]),
            models.Index(fields=["state", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"URL import {self.pk} ({self.state}): {self.url[:60]}"

    def log_context(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id}


class DeferredUpload(AttemptModel):
    """An uploaded file too heavy to check inside the web request, stored as sent for a worker to bring in:
    a zip archive to unpack, or an image too large to decode there. `results` holds, once it succeeded, each
    file it brought: added, a named duplicate, or refused with the reason (`ImportReport.as_dict`)."""

    State = ImportState

    class Kind(models.TextChoices):
        ARCHIVE = "archive", "Zip archive"
        IMAGE = "image", "Large image"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD)
    job_kind = DEFERRED_UPLOADS
    attempt_log = AttemptLog("pixelmill.deferred_uploads", "deferred upload finished", "deferred_upload")

    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="deferred_uploads")
    name = models.CharField(max_length=255, help_text="The uploaded file's name, as shown.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    file = models.FileField(
        max_length=300, blank=True, help_text="The file as sent; deleted once brought in."
    )
    byte_size = models.PositiveBigIntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    results = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["campaign", "state"]),
            models.Index(fields=["state", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"Deferred upload {self.pk} ({self.state}): {self.name}"

    def log_context(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id, "kind": self.kind, "byte_size": self.byte_size}

"""Rendered outputs of tasks, and the review that decides which of them leave the building."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class OutputQuerySet(models.QuerySet["Output"]):
    def visible_to(self, user: User) -> OutputQuerySet:
        # Through the model registry, not an import: campaigns.py imports this module.
        campaign = apps.get_model("dashboard", "Campaign")
        return self.filter(task__campaign__in=campaign.objects.visible_to(user))

    def approved(self) -> OutputQuerySet:
        return self.filter(review=Output.Review.APPROVED)

    def pending_review(self) -> OutputQuerySet:
        return self.filter(review=Output.Review.PENDING)

    def record_review(self, decision: str, user: User) -> int:
        """Approve or reject every output here (or send it back to review); returns how many."""
        if decision not in Output.Review.values:
            raise ValueError(f"unknown review decision {decision!r}")
        reviewed = decision != Output.Review.PENDING
        return self.update(
            review=decision,
            reviewed_by=user if reviewed else None,
            reviewed_at=timezone.now() if reviewed else None,
        )

    def carry_approval(self, earlier: Output) -> int:
        """Approve these outputs as `earlier` was, by the same person: they are its bytes again."""
        return self.update(
            review=Output.Review.APPROVED,
            reviewed_by_id=earlier.reviewed_by_id,
            reviewed_at=earlier.reviewed_at,
        )

    def with_earlier_approval(self) -> OutputQuerySet:
        """Outputs with the earlier version's approved output they were compared with, and its version, loaded."""
        return self.select_related("earlier_approved__task__recipe_version").defer(
            "earlier_approved__task__recipe_version__definition",
            "earlier_approved__task__timings",
            "earlier_approved__task__provider_calls",
        )

    def breaking_rules(self) -> OutputQuerySet:
        """Outputs flagged with at least one channel rule they break."""
        return self.exclude(violations=[])

    def tally(self) -> dict[str, int]:
        """How many outputs, approved, still to review and breaking a rule, in one pass (the campaign
        page's figures)."""
        return self.aggregate(
            total=Count("pk"),
            approved=Count("pk", filter=Q(review=Output.Review.APPROVED)),
            to_review=Count("pk", filter=Q(review=Output.Review.PENDING)),
            breaking_rules=Count("pk", filter=~Q(violations=[])),
        )


class Output(models.Model):
    """One rendered variant of a task, stored under a key derived from the task and spec."""

    class Review(models.TextChoices):
        PENDING = "pending", "To review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    task = models.ForeignKey("Task", on_delete=models.CASCADE, related_name="outputs")
    name = models.SlugField(max_length=60)
    file = models.FileField(max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    byte_size = models.PositiveBigIntegerField()
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="Hex SHA-256 of the file, written with it; empty for files stored before (computed when needed).",
    )
    earlier_approved = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="When rendered: the approved output of the same image, recipe and name in an earlier version. "
        "The same bytes kept its approval; different ones wait for review, marked as changed.",
    )
    quality = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Quality it was encoded at; lower than asked when a size limit applied.",
    )
    violations = models.JSONField(
        default=list, blank=True, help_text="Channel rules this file breaks: [{rule, message}]."
    )
    source_window = models.JSONField(
        null=True,
        blank=True,
        help_text="The part of the source this file shows, as fractions of the source: [left, top, right, "
        "bottom] (past 0..1 where padding or a canvas adds a border). Empty for files made before it was kept.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    review = models.CharField(
        max_length=10,
        choices=Review.choices,
        default=Review.PENDING,
        help_text="Only approved outputs go into an approved-only ZIP and through share links.",
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = OutputQuerySet.as_manager()

    class Meta:
        ordering = ["task", "pk"]
        constraints = [models.UniqueConstraint(fields=["task", "name"], name="unique_output_per_task")]
        indexes = [models.Index(fields=["task", "review"])]

    def __str__(self) -> str:
        return f"{self.name} of task {self.task_id}"

    def record_review(self, decision: str, user: User) -> None:
        Output.objects.filter(pk=self.pk).record_review(decision, user)
        self.refresh_from_db(fields=["review", "reviewed_by", "reviewed_at"])

    def content_hash(self) -> str:
        """The file's SHA-256; read from storage and kept the first time for a file stored without one."""
        if not self.sha256:
            digest = hashlib.sha256()
            with self.file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            self.sha256 = digest.hexdigest()
            Output.objects.filter(pk=self.pk, sha256="").update(sha256=self.sha256)
        return self.sha256

    @property
    def changed_since_approval(self) -> bool:
        """A new version rendered this differently from the earlier version's output someone approved."""
        earlier = self.earlier_approved
        return (
            earlier is not None
            and earlier.review == Output.Review.APPROVED
            and self.review != Output.Review.APPROVED
            and earlier.sha256 != self.sha256
        )

    @property
    def kept_earlier_approval(self) -> bool:
        """Approved because an earlier version's approved output had exactly these bytes."""
        earlier = self.earlier_approved
        return (
            earlier is not None
            and self.review == Output.Review.APPROVED
            and bool(self.sha256)
            and earlier.sha256 == self.sha256
        )

    def thumbnail_key(self, side: int | None = None) -> str:
        """Where a thumbnail of this output is kept; `side` names a size other than the usual one."""
        # The byte size is in the key: a task that renders again gets a fresh thumbnail, not a stale one.
        size = f"-{side}" if side else ""
        return f"renditions/outputs/{self.pk}-{self.byte_size}{size}.webp"

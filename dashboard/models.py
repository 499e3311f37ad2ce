"""Campaigns, their source images, admin-configured recipes, tasks and rendered outputs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, F
from django.urls import reverse
from django.utils import timezone

from jobs.operations import OPERATIONS, Operation, OperationParamsError, build_operation
from jobs.rendering import OutputSpec, OutputSpecError


class Team(models.Model):
    """A group of marketers who share campaigns."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    def __str__(self) -> str:
        return self.name


class CampaignQuerySet(models.QuerySet):
    def visible_to(self, user) -> CampaignQuerySet:
        if user.is_superuser:
            return self
        return self.filter(team__members=user)


class Campaign(models.Model):
    """A named batch of work: source images × the recipes chosen for them."""

    name = models.CharField(max_length=200)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="campaigns")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipes = models.ManyToManyField("Recipe", blank=True, related_name="campaigns")
    webhook_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("campaign-detail", args=[self.pk])

    def progress(self) -> Progress:
        return Progress.for_tasks(self.tasks.all())


class SourceImage(models.Model):
    """One original image; the same bytes never appear twice in a campaign."""

    class Origin(models.TextChoices):
        UPLOAD = "upload", "Upload"
        ZIP = "zip", "Zip archive"
        URL = "url", "URL"
        GENERATED = "generated", "Generated"
        COMMAND = "command", "Command line"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sources")
    sha256 = models.CharField(max_length=64)
    display_name = models.CharField(max_length=255)
    file = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    byte_size = models.PositiveBigIntegerField()
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.UPLOAD)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "sha256"], name="unique_source_bytes_per_campaign")
        ]

    def __str__(self) -> str:
        return self.display_name


class Recipe(models.Model):
    """Ordered steps and named output specs, configured by an admin; every save is a new version."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=0, editable=False)
    is_active = models.BooleanField(default=True, help_text="Inactive recipes cannot be picked for new runs.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def definition(self) -> dict[str, Any]:
        """The canonical form of the current steps and outputs, as frozen into a version."""
        return {
            "steps": [
                {"operation": step.operation, "params": build_operation(step.operation, step.params).params()}
                for step in self.steps.order_by("position", "pk")
            ],
            "outputs": [spec.as_spec().to_dict() for spec in self.outputs.order_by("position", "pk")],
        }

    @transaction.atomic
    def publish_version(self) -> RecipeVersion:
        """Freeze the current steps and outputs as the next version."""
        Recipe.objects.filter(pk=self.pk).update(version=F("version") + 1)
        self.refresh_from_db(fields=["version"])
        return RecipeVersion.objects.create(recipe=self, number=self.version, definition=self.definition())

    def current_version(self) -> RecipeVersion:
        version = self.versions.order_by("-number").first()
        return version if version is not None else self.publish_version()


class RecipeStep(models.Model):
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(default=0)
    operation = models.CharField(max_length=40, choices=[(name, op.label) for name, op in OPERATIONS.items()])
    params = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.position}. {self.operation}"

    def clean(self) -> None:
        try:
            build_operation(self.operation, self.params or {})
        except OperationParamsError as error:
            raise ValidationError({"params": str(error)}) from error


class RecipeOutput(models.Model):
    """A named output variant, e.g. 'thumbnail' 150×150 JPEG."""

    FIT_CHOICES = [("fit", "Fit inside"), ("fill", "Fill (crop)"), ("pad", "Pad to exact size")]
    FORMAT_CHOICES = [("jpeg", "JPEG"), ("webp", "WebP"), ("png", "PNG"), ("avif", "AVIF")]

    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="outputs")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.SlugField(max_length=60)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fit = models.CharField(max_length=8, choices=FIT_CHOICES, default="fit")
    format = models.CharField(max_length=8, choices=FORMAT_CHOICES, default="jpeg")
    quality = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: JPEG 85, WebP 80.")
    background = models.CharField(max_length=16, default="#ffffff")

    class Meta:
        ordering = ["position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["recipe", "name"], name="unique_output_name_per_recipe")
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.width}×{self.height} {self.format}"

    def as_spec(self) -> OutputSpec:
        return OutputSpec.from_dict(
            {
                "name": self.name,
                "width": self.width,
                "height": self.height,
                "fit": self.fit,
                "format": self.format,
                "quality": self.quality,
                "background": self.background,
            }
        )

    def clean(self) -> None:
        try:
            self.as_spec()
        except OutputSpecError as error:
            raise ValidationError(str(error)) from error


class RecipeVersion(models.Model):
    """An immutable snapshot of a recipe; tasks point here so a later edit never changes past work."""

    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["recipe", "-number"]
        constraints = [models.UniqueConstraint(fields=["recipe", "number"], name="unique_recipe_version")]

    def __str__(self) -> str:
        return f"{self.recipe.name} v{self.number}"

    def build_steps(self) -> list[Operation]:
        return [build_operation(step["operation"], step["params"]) for step in self.definition["steps"]]

    def build_specs(self) -> list[OutputSpec]:
        return [OutputSpec.from_dict(spec) for spec in self.definition["outputs"]]


class TaskQuerySet(models.QuerySet):
    def for_campaign(self, campaign: Campaign) -> TaskQuerySet:
        return self.filter(campaign=campaign)

    def failed(self) -> TaskQuerySet:
        """Tasks that stopped without succeeding and wait for a person: failed or dead."""
        return self.filter(state__in=[Task.State.FAILED, Task.State.DEAD])

    def unfinished(self) -> TaskQuerySet:
        return self.exclude(state__in=Task.TERMINAL_STATES)


class Task(models.Model):
    """One source image × one recipe version, and where its processing stands."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="tasks")
    source = models.ForeignKey(SourceImage, on_delete=models.CASCADE, related_name="tasks")
    recipe_version = models.ForeignKey(RecipeVersion, on_delete=models.PROTECT, related_name="tasks")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts started so far.")
    max_attempts = models.PositiveSmallIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    error_step = models.CharField(max_length=40, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    provider_request_ids = models.JSONField(default=list, blank=True)
    preview = models.FileField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "recipe_version"], name="unique_task_per_source_version"
            )
        ]
        permissions = [("view_queues", "Can see the RQ queue and worker pages")]
        indexes = [
            models.Index(fields=["campaign", "state"]),
            models.Index(fields=["state", "lease_expires_at"]),
            models.Index(fields=["campaign", "finished_at"]),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.state})"

    @classmethod
    def claim(cls, task_id: int, attempt: int, worker_name: str) -> bool:
        """Start `attempt` if nobody has: the conditional UPDATE makes a duplicate delivery a no-op."""
        now = timezone.now()
        claimed = cls.objects.filter(pk=task_id, state=cls.State.QUEUED, attempts=attempt - 1).update(
            state=cls.State.RUNNING,
            attempts=attempt,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=settings.PIXELMILL_TASK_LEASE_SECONDS),
            worker_name=worker_name[:200],
        )
        return claimed == 1

    def _running_attempt(self, attempt: int) -> TaskQuerySet:
        return Task.objects.filter(pk=self.pk, state=self.State.RUNNING, attempts=attempt)

    def mark_succeeded(self, attempt: int, *, timings: dict[str, float]) -> bool:
        return bool(
            self._running_attempt(attempt).update(
                state=self.State.SUCCEEDED,
                finished_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                error_code="",
                error_message="",
                error_step="",
                timings=timings,
            )
        )

    def mark_failed(self, attempt: int, *, code: str, message: str, step: str, permanent: bool) -> bool:
        """Record a failed attempt: permanent errors stop here, others become dead after the last try."""
        state = self.State.FAILED if permanent else self.State.DEAD
        return bool(
            self._running_attempt(attempt).update(
                state=state,
                finished_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                error_code=code[:40],
                error_message=message,
                error_step=step[:40],
            )
        )

    def schedule_retry(self, attempt: int, *, at, code: str, message: str, step: str) -> bool:
        """failed → queued again, due at `at`; the last error stays visible while it waits."""
        return bool(
            self._running_attempt(attempt).update(
                state=self.State.QUEUED,
                queued_at=timezone.now(),
                next_attempt_at=at,
                lease_expires_at=None,
                error_code=code[:40],
                error_message=message,
                error_step=step[:40],
            )
        )


class Progress:
    """Counts per state for a set of tasks, with throughput and an ETA."""

    WINDOW = timedelta(minutes=5)

    def __init__(self, counts: dict[str, int], retrying: int, recent_finished: int, window_seconds: float):
        self.counts = counts
        self.retrying = retrying
        self.total = sum(counts.values())
        self.done = sum(counts.get(state, 0) for state in Task.TERMINAL_STATES)
        self.succeeded = counts.get(Task.State.SUCCEEDED, 0)
        self.failed = counts.get(Task.State.FAILED, 0) + counts.get(Task.State.DEAD, 0)
        self.remaining = self.total - self.done
        self.per_minute = recent_finished * 60 / window_seconds if window_seconds > 0 else 0.0
        self.percent = (100 * self.done // self.total) if self.total else 0

    @classmethod
    def for_tasks(cls, tasks: TaskQuerySet) -> Progress:
        counts = {row["state"]: row["n"] for row in tasks.order_by().values("state").annotate(n=Count("pk"))}
        now = timezone.now()
        recent = tasks.filter(finished_at__gte=now - cls.WINDOW).order_by()
        stats = recent.aggregate(n=Count("pk"), since=models.Min("started_at"))
        retrying = tasks.filter(state=Task.State.QUEUED, attempts__gt=0).exclude(error_message="").count()
        window = 0.0
        if stats["n"]:
            # A run that started a minute ago is averaged over that minute, not the whole window.
            window = (now - stats["since"]).total_seconds() if stats["since"] else cls.WINDOW.total_seconds()
            window = min(max(window, 1.0), cls.WINDOW.total_seconds())
        return cls({str(k): v for k, v in counts.items()}, retrying, stats["n"], window)

    @property
    def eta_seconds(self) -> float | None:
        if not self.remaining or self.per_minute <= 0:
            return None
        return self.remaining / self.per_minute * 60

    @property
    def is_finished(self) -> bool:
        return self.total > 0 and self.remaining == 0

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)


class Output(models.Model):
    """One rendered variant of a task, stored under a key derived from the task and spec."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="outputs")
    name = models.SlugField(max_length=60)
    file = models.FileField(max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    byte_size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "pk"]
        constraints = [models.UniqueConstraint(fields=["task", "name"], name="unique_output_per_task")]

    def __str__(self) -> str:
        return f"{self.name} of task {self.task_id}"

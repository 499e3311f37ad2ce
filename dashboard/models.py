"""Campaigns, their source images, admin-configured recipes, tasks and rendered outputs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, get_random_string

from jobs.operations import OPERATIONS, Operation, OperationParamsError, build_operation
from jobs.providers import batches
from jobs.recipe_steps import compile_steps, paid_calls, step_providers
from jobs.rendering import OutputSpec, OutputSpecError

if TYPE_CHECKING:
    from dashboard.causes import CauseGroup


class Team(models.Model):
    """A group of marketers who share campaigns."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    def __str__(self) -> str:
        return self.name


class CampaignQuerySet(models.QuerySet):
    def start_run(self, at: datetime | None = None) -> int:
        """A new run of these campaigns (Process, Requeue, Generate): one webhook each, progress from `at`."""
        return self.update(run_number=F("run_number") + 1, run_started_at=at or timezone.now())

    def visible_to(self, user) -> CampaignQuerySet:
        if user.is_superuser:
            return self
        return self.filter(team__members=user)

    def with_counts(self) -> CampaignQuerySet:
        """source_count, task_count, done_count and failed_count, one correlated subquery each.

        Counting through joins (COUNT DISTINCT over sources × tasks) multiplies the rows: a campaign
        of 10,000 images and 100,000 tasks made a billion of them.
        """
        return self.annotate(
            source_count=_count_per_campaign(SourceImage.objects.all()),
            task_count=_count_per_campaign(Task.objects.all()),
            done_count=_count_per_campaign(Task.objects.filter(state__in=Task.TERMINAL_STATES)),
            failed_count=_count_per_campaign(Task.objects.failed()),
        )


def _count_per_campaign(rows: models.QuerySet) -> Coalesce:
    counted = rows.filter(campaign=OuterRef("pk")).order_by().values("campaign").annotate(n=Count("pk"))
    return Coalesce(Subquery(counted.values("n")), 0)


class Campaign(models.Model):
    """A named batch of work: source images × the recipes chosen for them."""

    name = models.CharField(max_length=200)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="campaigns")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipes = models.ManyToManyField("Recipe", blank=True, related_name="campaigns")
    webhook_url = models.URLField(
        blank=True, help_text="Receives a signed JSON summary each time a run of this campaign finishes."
    )
    webhook_secret = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Signs webhook bodies; shown once to the owner."
    )
    run_number = models.PositiveIntegerField(
        default=0, editable=False, help_text="Counts Process and Requeue actions; one webhook per run."
    )
    run_started_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the current run began; progress counts from it.",
    )
    remote_paused_reason = models.TextField(
        blank=True, help_text="Set when a provider says the account is out of credits; remote steps wait."
    )
    remote_paused_at = models.DateTimeField(null=True, blank=True)
    remote_paused_code = models.CharField(
        max_length=40, blank=True, help_text="Why remote work waits: credits_exhausted or budget_reached."
    )
    budget_cap = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Most this campaign may spend on provider calls; remote steps pause when reached. Empty: no cap.",
    )
    remote_spent = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        default=0,
        editable=False,
        help_text="Booked before each paid provider call, at the provider's price per call.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("campaign-detail", args=[self.pk])

    def archive_name(self, suffix: str = "") -> str:
        """The download's file name: the campaign's name a person recognises, and its id to keep it unique."""
        from django.utils.text import slugify

        return f"pixelmill-{slugify(self.name)[:60] or 'campaign'}-{self.pk}{suffix}.zip"

    def run_tasks(self) -> TaskQuerySet:
        """The tasks of what is going on now: everything queued since the latest Process, Requeue or
        Generate, and anything older that has not finished yet."""
        tasks = self.tasks.all()
        if self.run_started_at is None:
            return tasks
        return tasks.filter(Q(queued_at__gte=self.run_started_at) | ~Q(state__in=Task.TERMINAL_STATES))

    def progress(self) -> Progress:
        """Progress of the current run: a second Process starts again from 0%, not from the history."""
        return Progress.for_tasks(self.run_tasks())

    def approved_output_count(self) -> int:
        return Output.objects.filter(task__campaign=self).approved().count()

    def recipe_updates(self) -> list[RecipeUpdate]:
        """Each of the campaign's recipes with the versions its tasks were made with, and whether a newer one exists."""
        used: dict[int, set[int]] = {}
        # Version by version, whether this campaign has a task on it: one index probe each
        # (task_version_campaign), where DISTINCT over the campaign's tasks read all 100,000 (23 ms).
        in_campaign = Task.objects.filter(campaign=self, recipe_version=OuterRef("pk"))
        for recipe_id, number in RecipeVersion.objects.filter(Exists(in_campaign)).values_list(
            "recipe_id", "number"
        ):
            used.setdefault(recipe_id, set()).add(number)
        return [
            RecipeUpdate(recipe, sorted(used[recipe.pk]))
            for recipe in self.recipes.filter(pk__in=used).order_by("name")
        ]

    @classmethod
    def book_remote_spend(cls, campaign_id: int, amount: Decimal) -> bool:
        """Book a paid call's price before making it; False when it would take the campaign past its cap.

        One conditional UPDATE, so workers racing for the last of the budget cannot overspend it together.
        """
        if amount <= 0:
            return True
        within_cap = Q(budget_cap__isnull=True) | Q(budget_cap__gte=F("remote_spent") + amount)
        booked = cls.objects.filter(within_cap, pk=campaign_id).update(
            remote_spent=F("remote_spent") + amount
        )
        return booked == 1

    @classmethod
    def refund_remote_spend(cls, campaign_id: int, amount: Decimal) -> None:
        """A booked call the provider did not charge for (it answered with an error)."""
        if amount > 0:
            cls.objects.filter(pk=campaign_id).update(remote_spent=F("remote_spent") - amount)

    @classmethod
    def pause_remote(cls, campaign_id: int, *, code: str, reason: str) -> bool:
        """Stop remote steps until someone resumes them; the first reason stays."""
        return bool(
            cls.objects.filter(pk=campaign_id, remote_paused_reason="").update(
                remote_paused_reason=reason, remote_paused_code=code[:40], remote_paused_at=timezone.now()
            )
        )

    def suggested_budget_cap(self) -> Decimal | None:
        """What to raise a reached cap to: what is spent plus the dearest call for each waiting task."""
        if self.budget_cap is None:
            return None
        waiting = self.tasks.filter(state=Task.State.PAUSED).count()
        dearest = Provider.objects.filter(is_active=True).aggregate(m=models.Max("price_per_call"))["m"]
        suggested = self.remote_spent + waiting * (dearest or Decimal(0))
        return max(suggested, self.budget_cap + Decimal("0.01")).quantize(Decimal("0.01"))

    @property
    def budget_left(self) -> Decimal | None:
        return None if self.budget_cap is None else max(Decimal(0), self.budget_cap - self.remote_spent)


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
        from jobs.providers import ProviderConfigError, config_from_fields

        try:
            config_from_fields(self.slug, self.kind, self.base_url, self.options)
        except ProviderConfigError as error:
            raise ValidationError({"options": str(error)}) from error

    def config(self):
        """The frozen settings a worker builds its client from."""
        from jobs.providers import ProviderConfig

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
            "steps": [step.definition() for step in self.steps.select_related("provider", "fallback")],
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
    provider = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: run locally on the worker.",
    )
    fallback = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Used while the provider's circuit breaker is open.",
    )

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.position}. {self.operation}"

    def clean(self) -> None:
        try:
            build_operation(self.operation, self.params or {})
        except OperationParamsError as error:
            raise ValidationError({"params": str(error)}) from error
        from jobs.providers import supports

        for field in ("provider", "fallback"):
            chosen = getattr(self, field)
            if chosen is not None and not supports(chosen.kind, self.operation):
                op = (
                    OPERATIONS[self.operation].label.lower()
                    if self.operation in OPERATIONS
                    else self.operation
                )
                raise ValidationError(
                    {
                        field: f"{chosen.name} is a {chosen.get_kind_display()} provider and cannot {op}. "
                        "Pick one that can, or leave it empty to run this step on our workers."
                    }
                )
        if self.fallback_id and not self.provider_id:
            raise ValidationError({"fallback": "A fallback needs a provider to fall back from."})

    def definition(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "params": build_operation(self.operation, self.params).params(),
            "provider": self.provider.slug if self.provider else None,
            "fallback": self.fallback.slug if self.fallback else None,
        }


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
    # Channel rules: the renderer steps quality down to meet max_kb; what still breaks a rule is flagged.
    max_kb = models.PositiveIntegerField(
        "max KB",
        null=True,
        blank=True,
        help_text="Largest file allowed, in KB (1 KB = 1024 bytes), e.g. 150 for display ads. "
        "JPEG, WebP and AVIF step quality down to fit.",
    )
    min_width = models.PositiveIntegerField(
        null=True, blank=True, help_text="Smallest width the channel accepts (matters for 'fit')."
    )
    min_height = models.PositiveIntegerField(null=True, blank=True)
    aspect = models.CharField(
        "exact aspect",
        max_length=16,
        blank=True,
        help_text='Required ratio written "W:H", e.g. 1200:628 or 16:9.',
    )
    # Encoder effort (jobs.rendering.ENCODER_DEFAULTS); what each costs is in docs/performance.md.
    webp_method = models.PositiveSmallIntegerField(
        "WebP method",
        null=True,
        blank=True,
        help_text="WebP only: 0 (fastest) to 6 (smallest files). Empty: 4.",
    )
    progressive = models.BooleanField(
        "progressive JPEG",
        default=False,
        help_text="JPEG only: shows a coarse picture early while loading, files a little smaller, slower to encode.",
    )
    avif_speed = models.PositiveSmallIntegerField(
        "AVIF speed",
        null=True,
        blank=True,
        help_text="AVIF only: 0 (slowest, smallest files) to 10 (fastest). Empty: 8.",
    )

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
                "max_bytes": self.max_kb * 1024 if self.max_kb else None,
                "min_width": self.min_width,
                "min_height": self.min_height,
                "aspect": self.aspect or None,
                "webp_method": self.webp_method,
                "progressive": self.progressive,
                "avif_speed": self.avif_speed,
            }
        )

    def clean(self) -> None:
        try:
            self.as_spec()
        except OutputSpecError as error:
            raise ValidationError(str(error)) from error


def build_steps(
    definition: dict[str, Any], overrides: dict[str, str | None] | None = None
) -> list[Operation]:
    """A recipe definition's steps as operations (jobs.recipe_steps), asking the database which providers
    take a chain of steps in one call."""
    return compile_steps(definition, overrides, batching=Provider.batching_slugs)


def remote_calls(definition: dict[str, Any]) -> tuple[str, ...]:
    """The provider of each paid call one task of this definition makes (a batched chain is one call)."""
    return paid_calls(build_steps(definition))


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

    def build_steps(self, overrides: dict[str, str | None] | None = None) -> list[Operation]:
        return build_steps(self.definition, overrides)

    def uses_providers(self, overrides: dict[str, str | None] | None = None) -> bool:
        return any(step_providers(step, overrides)[0] for step in self.definition["steps"])

    def build_specs(self) -> list[OutputSpec]:
        return [OutputSpec.from_dict(spec) for spec in self.definition["outputs"]]


class RecipeUpdate:
    """A campaign's recipe: the versions its tasks used, and the current one it could re-run on."""

    def __init__(self, recipe: Recipe, used_numbers: list[int]) -> None:
        self.recipe = recipe
        self.used_numbers = used_numbers
        self.current_number = recipe.version

    @property
    def has_new_version(self) -> bool:
        return self.recipe.is_active and self.current_number not in self.used_numbers

    @property
    def can_compare(self) -> bool:
        return len(self.used_numbers) >= 2


class TaskQuerySet(models.QuerySet):
    def insert_queued(
        self, campaign: Campaign, sources: models.QuerySet, version: RecipeVersion, *, max_attempts: int
    ) -> list[int]:
        """Queued tasks for `sources` (SourceImage rows) on `version` that have none yet, in one
        INSERT … SELECT … RETURNING; their primary keys.

        bulk_create spent 1.3 s of Python on 10,000 rows (preparing every field of every row); here each
        column's value is prepared once and the database copies it, so only the source id varies.
        """
        now = timezone.now()
        given = {
            "campaign": campaign.pk,
            "recipe_version": version.pk,
            "state": Task.State.QUEUED,
            "max_attempts": max_attempts,
            "created_at": now,
            "queued_at": now,
        }
        quote = connection.ops.quote_name
        source_pk = f"s.{quote(SourceImage._meta.pk.column)}"
        columns, values, params = [], [], []
        for field in Task._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(quote(field.column))
            if field.name == "source":
                values.append(source_pk)  # the one value per row
                continue
            value = given[field.name] if field.name in given else field.get_default()
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
        chosen, chosen_params = sources.order_by().values("pk").query.sql_with_params()
        task, source = quote(Task._meta.db_table), quote(SourceImage._meta.db_table)
        source_fk = quote(Task._meta.get_field("source").column)
        version_fk = quote(Task._meta.get_field("recipe_version").column)
        sql = (
            f"INSERT INTO {task} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM {source} s WHERE {source_pk} IN ({chosen}) "
            f"AND NOT EXISTS (SELECT 1 FROM {task} t WHERE t.{source_fk} = {source_pk} AND t.{version_fk} = %s) "
            f"ORDER BY {source_pk} RETURNING {quote(Task._meta.pk.column)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *chosen_params, version.pk])
            return sorted(pk for (pk,) in cursor.fetchall())

    def for_campaign(self, campaign: Campaign) -> TaskQuerySet:
        return self.filter(campaign=campaign)

    def failed(self) -> TaskQuerySet:
        """Tasks that stopped without succeeding and wait for a person: failed or dead."""
        return self.filter(state__in=[Task.State.FAILED, Task.State.DEAD])

    def unfinished(self) -> TaskQuerySet:
        return self.exclude(state__in=Task.TERMINAL_STATES)

    def with_cause(self, slug: str) -> TaskQuerySet:
        """Tasks whose error has this cause (dashboard.causes); an unknown cause matches nothing."""
        from dashboard.causes import BY_SLUG, OTHER, other_q

        cause = BY_SLUG.get(slug)
        if cause is None:
            return self.none()
        return self.filter(other_q() if cause is OTHER else cause.q())

    def causes(self) -> list[CauseGroup]:
        """These tasks' errors grouped into causes with counts, from one GROUP BY on the error code."""
        from dashboard.causes import group_by_cause

        return group_by_cause(self.order_by().values_list("error_code").annotate(n=Count("pk")))


class Task(models.Model):
    """One source image × one recipe version, and where its processing stands."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        PAUSED = "paused", "Paused"
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
    deferrals = models.PositiveSmallIntegerField(
        default=0, help_text="Attempts handed back unrun (rate limits, a paused campaign); not failures."
    )
    max_attempts = models.PositiveSmallIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    error_step = models.CharField(max_length=40, blank=True)
    error_detail = models.TextField(
        blank=True, help_text="For staff: the type, message and traceback of a bug, under its error ref."
    )
    timings = models.JSONField(default=dict, blank=True)
    duration_ms = models.FloatField(
        null=True,
        blank=True,
        help_text="timings['total'] of the succeeded attempt, a column so charts aggregate it.",
    )
    provider_calls = models.JSONField(
        default=list, blank=True, help_text="One entry per remote step: provider, request id, cached or not."
    )
    provider_overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text='Chosen at requeue: {"remove_background": "photoroom"} runs that step there; null runs it locally.',
    )
    preview = models.FileField(max_length=300, blank=True)
    notes = models.JSONField(
        default=list,
        blank=True,
        help_text='Left by the steps of the succeeded attempt: {"code": "kept_whole", "message": why}.',
    )
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
            # error_code too: the failures page groups a campaign's failed tasks by it from the index.
            models.Index(fields=["campaign", "state", "error_code"], name="task_campaign_state"),
            models.Index(fields=["state", "lease_expires_at"]),
            # Covers Progress's "finished in the last five minutes, since when" without a table lookup
            # per row: at 100,000 tasks that query alone took 130 ms.
            models.Index(fields=["campaign", "finished_at", "started_at"], name="task_campaign_finished"),
            # Recent succeeded tasks: the measured task time of estimates, system-wide charts.
            models.Index(fields=["state", "finished_at"]),
            # "Which images already have this version": the estimate and Process count it per version.
            models.Index(fields=["recipe_version", "campaign"], name="task_version_campaign"),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.state})"

    def build_steps(self) -> list[Operation]:
        return self.recipe_version.build_steps(self.provider_overrides)

    def kept_whole_reason(self) -> str:
        """Why background removal kept the photo whole instead (the refusal it met); "" if it did not."""
        return next((note.get("message", "") for note in self.notes if note.get("code") == "kept_whole"), "")

    def uses_providers(self) -> bool:
        return self.recipe_version.uses_providers(self.provider_overrides)

    @classmethod
    def claim(cls, task_id: int, attempt: int, worker_name: str) -> bool:
        """Start `attempt` if nobody has: the conditional UPDATE makes a duplicate delivery a no-op."""
        from jobs.leases import lease_expiry

        claimed = cls.objects.filter(pk=task_id, state=cls.State.QUEUED, attempts=attempt - 1).update(
            state=cls.State.RUNNING,
            attempts=attempt,
            started_at=timezone.now(),
            lease_expires_at=lease_expiry(),
            worker_name=worker_name[:200],
        )
        return claimed == 1

    def running_attempt(self, attempt: int) -> TaskQuerySet:
        """This task, only while `attempt` is the one running: updates through it cannot clobber a newer one."""
        return Task.objects.filter(pk=self.pk, state=self.State.RUNNING, attempts=attempt)

    def mark_succeeded(self, attempt: int, *, timings: dict[str, float]) -> bool:
        return bool(
            self.running_attempt(attempt).update(
                state=self.State.SUCCEEDED,
                finished_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                error_code="",
                error_message="",
                error_step="",
                error_detail="",
                timings=timings,
                duration_ms=timings.get("total"),
            )
        )

    def mark_failed(
        self, attempt: int, *, code: str, message: str, step: str, permanent: bool, detail: str = ""
    ) -> bool:
        """Record a failed attempt: permanent errors stop here, others become dead after the last try."""
        state = self.State.FAILED if permanent else self.State.DEAD
        return bool(
            self.running_attempt(attempt).update(
                state=state,
                finished_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                error_code=code[:40],
                error_message=message,
                error_step=step[:40],
                error_detail=detail,
            )
        )

    @property
    def failed_attempts(self) -> int:
        return self.attempts - self.deferrals

    def review_counts(self) -> dict[str, int]:
        """Outputs per review decision; reads prefetched outputs when the gallery prefetched them."""
        counts = dict.fromkeys(Output.Review.values, 0)
        for output in self.outputs.all():
            counts[output.review] += 1
        return counts

    def defer(self, attempt: int, *, at, message: str) -> bool:
        """Hand the attempt back unrun (a shared rate limit said wait): it does not count as a failure."""
        return bool(
            self.running_attempt(attempt).update(
                state=self.State.QUEUED,
                queued_at=timezone.now(),
                next_attempt_at=at,
                lease_expires_at=None,
                deferrals=F("deferrals") + 1,
                error_message=message,
            )
        )

    def park(self, attempt: int, *, message: str) -> bool:
        """Wait, without a job, until someone resumes the campaign's remote work."""
        return bool(
            self.running_attempt(attempt).update(
                state=self.State.PAUSED,
                lease_expires_at=None,
                next_attempt_at=None,
                deferrals=F("deferrals") + 1,
                error_code="paused",
                error_message=message,
                error_step="",
            )
        )

    def schedule_retry(self, attempt: int, *, at, code: str, message: str, step: str) -> bool:
        """failed → queued again, due at `at`; the last error stays visible while it waits."""
        return bool(
            self.running_attempt(attempt).update(
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
        if not self.remaining or self.per_minute <= 0 or self.is_waiting_for_resume:
            return None
        return self.remaining / self.per_minute * 60

    @property
    def is_finished(self) -> bool:
        return self.total > 0 and self.remaining == 0

    @property
    def is_waiting_for_resume(self) -> bool:
        """Everything left is paused (credits or the budget cap): no countdown means anything now."""
        paused = self.count(Task.State.PAUSED)
        return bool(paused) and paused == self.remaining

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)


class OutputQuerySet(models.QuerySet):
    def visible_to(self, user) -> OutputQuerySet:
        return self.filter(task__campaign__in=Campaign.objects.visible_to(user))

    def approved(self) -> OutputQuerySet:
        return self.filter(review=Output.Review.APPROVED)

    def pending_review(self) -> OutputQuerySet:
        return self.filter(review=Output.Review.PENDING)

    def record_review(self, decision: str, user) -> int:
        """Approve or reject every output here (or send it back to review); returns how many."""
        if decision not in Output.Review.values:
            raise ValueError(f"unknown review decision {decision!r}")
        reviewed = decision != Output.Review.PENDING
        return self.update(
            review=decision,
            reviewed_by=user if reviewed else None,
            reviewed_at=timezone.now() if reviewed else None,
        )

    def breaking_rules(self) -> OutputQuerySet:
        """Outputs flagged with at least one channel rule they break."""
        return self.exclude(violations=[])

    def tally(self) -> dict[str, int]:
        """How many outputs, approved and breaking a rule, in one pass (the campaign page's three figures)."""
        return self.aggregate(
            total=Count("pk"),
            approved=Count("pk", filter=Q(review=Output.Review.APPROVED)),
            breaking_rules=Count("pk", filter=~Q(violations=[])),
        )


class Output(models.Model):
    """One rendered variant of a task, stored under a key derived from the task and spec."""

    class Review(models.TextChoices):
        PENDING = "pending", "To review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="outputs")
    name = models.SlugField(max_length=60)
    file = models.FileField(max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    byte_size = models.PositiveBigIntegerField()
    quality = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Quality it was encoded at; lower than asked when a size limit applied.",
    )
    violations = models.JSONField(
        default=list, blank=True, help_text="Channel rules this file breaks: [{rule, message}]."
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

    def record_review(self, decision: str, user) -> None:
        Output.objects.filter(pk=self.pk).record_review(decision, user)
        self.refresh_from_db(fields=["review", "reviewed_by", "reviewed_at"])

    def thumbnail_key(self) -> str:
        # The byte size is in the key: a task that renders again gets a fresh thumbnail, not a stale one.
        return f"renditions/outputs/{self.pk}-{self.byte_size}.webp"


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

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="generations")
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

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="url_imports")
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


class WebhookDelivery(models.Model):
    """One signed POST of a campaign event to the campaign's webhook URL, with every try recorded."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=40, default="campaign.run.finished")
    webhook_secret = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Signs webhook bodies; shown once to the owner."
    )
    run_number = models.PositiveIntegerField()
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True, help_text="One entry per try: time, status, error.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "event", "run_number"], name="one_delivery_per_campaign_event_run"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.run_number} of {self.campaign} ({self.state})"


class ShareLinkQuerySet(models.QuerySet):
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

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="share_links")
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
    def issue(cls, campaign: Campaign, user, *, days: int, label: str = "") -> ShareLink:
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

    def revoke(self, user) -> bool:
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

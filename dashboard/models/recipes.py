"""Recipes an admin configures (steps and named outputs), and the immutable versions tasks are made with."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F

from dashboard.models.providers import Provider
from jobs.operations import OPERATIONS, Operation, OperationParamsError, build_operation
from jobs.outputs import OutputSpec, OutputSpecError
from jobs.providers import supports
from jobs.recipe_steps import compile_steps, paid_calls, step_providers


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
    # Encoder effort (jobs.outputs.ENCODER_DEFAULTS); what each costs is in docs/performance.md.
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

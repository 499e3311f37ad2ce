"""Admin: recipes with ordered steps and output inlines (validated by the operation registry), and the run data."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from dashboard import services
from dashboard.models import (
    Campaign,
    Output,
    Provider,
    Recipe,
    RecipeOutput,
    RecipeStep,
    RecipeVersion,
    StepResult,
    Task,
    Team,
)
from jobs.operations import OPERATIONS


class RecipeStepInline(admin.TabularInline):
    model = RecipeStep
    extra = 0
    fields = ["position", "operation", "params", "provider", "fallback"]


class RecipeOutputInline(admin.TabularInline):
    model = RecipeOutput
    extra = 0
    fields = ["position", "name", "width", "height", "fit", "format", "quality", "background"]


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "is_active", "step_list", "output_list", "updated_at"]
    list_filter = ["is_active"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["version", "operation_reference"]
    fields = ["name", "slug", "description", "is_active", "version", "operation_reference"]
    inlines = [RecipeStepInline, RecipeOutputInline]

    @admin.display(description="Steps")
    def step_list(self, recipe: Recipe) -> str:
        return " → ".join(step.operation for step in recipe.steps.all()) or "–"

    @admin.display(description="Outputs")
    def output_list(self, recipe: Recipe) -> str:
        return ", ".join(f"{o.name} {o.width}×{o.height}" for o in recipe.outputs.all()) or "–"

    @admin.display(description="Operations and their parameters")
    def operation_reference(self, recipe: Recipe | None = None) -> str:
        rows = (
            (name, op.label, op.description, ", ".join(f"{k}={v!r}" for k, v in default_params(op).items()))
            for name, op in OPERATIONS.items()
        )
        return format_html(
            "<table><tr><th>operation</th><th>what it does</th><th>default params (JSON)</th></tr>{}</table>",
            format_html_join(
                "", "<tr><td><code>{}</code><br>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows
            ),
        )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("steps", "outputs")

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        version = form.instance.publish_version()
        messages.info(
            request, f"Saved as version {version.number}; running tasks keep the version they started with."
        )


def default_params(operation) -> dict:
    try:
        return operation.from_params({}).params()
    except ValueError:
        return {}  # the operation has required parameters (e.g. the text of a text overlay)


@admin.register(RecipeVersion)
class RecipeVersionAdmin(admin.ModelAdmin):
    list_display = ["recipe", "number", "created_at"]
    list_filter = ["recipe"]
    readonly_fields = ["recipe", "number", "definition", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name"]
    filter_horizontal = ["members"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_by", "created_at"]
    list_filter = ["team"]
    search_fields = ["name"]
    filter_horizontal = ["recipes"]


@admin.action(description="Requeue selected failed or dead tasks")
def requeue_selected(modeladmin, request, queryset) -> None:
    count = services.requeue_tasks(queryset)
    modeladmin.message_user(request, f"Requeued {count} task(s).", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "campaign",
        "source",
        "recipe_version",
        "state",
        "attempts",
        "error_code",
        "finished_at",
    ]
    list_filter = ["state", "error_code", "campaign"]
    search_fields = ["source__display_name", "error_message"]
    list_select_related = ["campaign", "source", "recipe_version__recipe"]
    readonly_fields = [f.name for f in Task._meta.fields] + ["output_links"]
    actions = [requeue_selected]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Outputs")
    def output_links(self, task: Task) -> str:
        return format_html_join(
            ", ", '<a href="/outputs/{}/">{}</a>', ((o.pk, o.name) for o in task.outputs.all())
        )


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["task", "name", "width", "height", "format", "byte_size"]
    list_select_related = ["task"]
    readonly_fields = ["task", "name", "file", "width", "height", "format", "byte_size", "created_at"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Where the workers send remote steps; the key is read from the named environment variable."""

    list_display = [
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "key_present",
        "requests_per_second",
        "concurrency",
        "is_active",
    ]
    list_filter = ["kind", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    fields = [
        "name",
        "slug",
        "kind",
        "base_url",
        "api_key_env",
        "requests_per_second",
        "concurrency",
        "timeout_seconds",
        "price_per_call",
        "options",
        "is_active",
    ]

    @admin.display(description="Key set", boolean=True)
    def key_present(self, provider: Provider) -> bool | None:
        """Whether this web process sees the variable; workers read their own environment."""
        return bool(provider.config().api_key()) if provider.api_key_env else None


@admin.register(StepResult)
class StepResultAdmin(admin.ModelAdmin):
    list_display = ["key", "operation", "provider", "byte_size", "request_id", "created_at"]
    list_filter = ["provider", "operation"]
    search_fields = ["key", "request_id"]
    readonly_fields = [f.name for f in StepResult._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

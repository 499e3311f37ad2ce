"""Admin: recipes with ordered steps and output inlines (validated by the operation registry), and the run data."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import models
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from dashboard import recipe_preview, services
from dashboard.models import (
    AttemptModel,
    Campaign,
    DeferredUpload,
    Generation,
    Output,
    Provider,
    Recipe,
    RecipeOutput,
    RecipeStep,
    RecipeVersion,
    StepResult,
    Task,
    Team,
    WebhookDelivery,
)
from jobs.operations import OPERATIONS
from jobs.providers import KIND_OPERATIONS, supports
from jobs.webhooks import resend_deliveries

admin.site.site_header = "Pixelmill administration"
admin.site.site_title = "Pixelmill admin"
admin.site.index_title = "Recipes, providers and operations"


class RecipeStepInline(admin.TabularInline):
    model = RecipeStep
    extra = 0
    fields = ["position", "operation", "params", "provider", "fallback"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Provider menus offer only providers that can run a step, each saying what it can do, so
        "remove.bg — can: remove background" is chosen for the right row; a mismatch is still refused
        on save with its reason."""
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name in ("provider", "fallback"):
            step_kinds = [kind for kind, operations in KIND_OPERATIONS.items() if operations]
            field.queryset = field.queryset.filter(kind__in=step_kinds)
            field.label_from_instance = provider_menu_label
        return field


def provider_menu_label(provider: Provider) -> str:
    labels = [OPERATIONS[name].label.lower() for name in OPERATIONS if supports(provider.kind, name)]
    switched_off = "" if provider.is_active else " (switched off)"
    return f"{provider.name}{switched_off} — can: {', '.join(labels)}"


class RecipeOutputInline(admin.StackedInline):
    """One output per block of three short rows: as a table its fifteen columns made the form 2,477 px wide."""

    model = RecipeOutput
    extra = 0
    fieldsets = [
        (
            None,
            {"fields": [("position", "name", "width", "height", "fit", "format", "quality", "background")]},
        ),
        ("Channel rules", {"fields": [("max_kb", "min_width", "min_height", "aspect")]}),
        ("Encoder effort", {"fields": [("webp_method", "progressive", "avif_speed")]}),
    ]


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "is_active", "step_list", "output_list", "updated_at"]
    list_filter = ["is_active"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["version", "operation_reference"]
    fields = ["name", "slug", "description", "is_active", "version", "operation_reference"]
    inlines = [RecipeStepInline, RecipeOutputInline]
    # Adds "Preview before saving" under the inlines (dashboard/recipe_preview.py).
    change_form_template = "admin/dashboard/recipe/change_form.html"

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="dashboard_recipe_preview"), *super().get_urls()]

    def preview_view(self, request):
        return recipe_preview.preview_view(self, request)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "preview_samples": recipe_preview.sample_choices(request.user),
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

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
    list_display = ["name", "team", "created_by", "budget_cap", "remote_spent", "created_at"]
    list_filter = ["team"]
    search_fields = ["name"]
    filter_horizontal = ["recipes"]
    readonly_fields = ["remote_spent", "remote_paused_code", "remote_paused_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, today


def fields_with_detail_as_pre(model: type[models.Model]) -> list[str]:
    """Every field read-only, the shared attempt fields right after the state, with error_detail shown by
    `error_traceback`: a plain read-only TextField would lose a traceback's indentation."""
    shared = [f.name for f in AttemptModel._meta.fields]
    own = [f.name for f in model._meta.fields if f.name not in shared]
    after_state = own.index("state") + 1
    names = [*own[:after_state], *shared, *own[after_state:]]
    return [name if name != "error_detail" else "error_traceback" for name in names]


def traceback_block(detail: str) -> str:
    return format_html("<pre>{}</pre>", detail) if detail else "–"


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
    readonly_fields = [*fields_with_detail_as_pre(Task), "output_links"]
    actions = [requeue_selected]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Error detail")
    def error_traceback(self, task: Task) -> str:
        return traceback_block(task.error_detail)

    @admin.display(description="Outputs")
    def output_links(self, task: Task) -> str:
        return format_html_join(
            ", ", '<a href="/outputs/{}/">{}</a>', ((o.pk, o.name) for o in task.outputs.all())
        )


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["task", "name", "width", "height", "format", "byte_size", "quality", "rules_ok", "review"]
    list_filter = ["review"]
    list_select_related = ["task"]
    readonly_fields = [
        "task",
        "name",
        "file",
        "width",
        "height",
        "format",
        "byte_size",
        "quality",
        "violations",
        "source_window",
        "created_at",
        "review",
        "reviewed_by",
        "reviewed_at",
    ]

    @admin.display(description="Channel rules met", boolean=True)
    def rules_ok(self, output: Output) -> bool:
        return not output.violations


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Where the workers send remote steps; the key is read from the named environment variable."""

    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, today

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


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    """Prompts sent to fal; read-only, since the request id is what keeps a prompt from being paid twice."""

    list_display = [
        "pk",
        "campaign",
        "state",
        "short_prompt",
        "request_id",
        "attempts",
        "error_code",
        "queued_at",
    ]
    list_filter = ["state", "error_code", "provider"]
    search_fields = ["prompt", "request_id", "error_message"]
    list_select_related = ["campaign", "provider"]
    readonly_fields = fields_with_detail_as_pre(Generation)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Error detail")
    def error_traceback(self, generation: Generation) -> str:
        return traceback_block(generation.error_detail)

    @admin.display(description="Prompt")
    def short_prompt(self, generation: Generation) -> str:
        return generation.prompt[:80]


@admin.action(description="Send again", permissions=["resend"])
def send_again(modeladmin, request, queryset):
    """Confirm first, then back to pending with fresh tries: for a receiver that was down or lost the event."""
    if request.POST.get("post") != "yes":
        return TemplateResponse(
            request,
            "admin/dashboard/webhookdelivery/confirm_send_again.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": "Send these webhooks again?",
                "opts": modeladmin.model._meta,
                "deliveries": queryset.select_related("campaign"),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )
    count = resend_deliveries(queryset)
    modeladmin.message_user(request, f"Sending {count} webhook(s) again.", messages.SUCCESS)
    return None


@admin.action(description="Try the selected dead uploads again", permissions=["requeue"])
def try_uploads_again(modeladmin, request, queryset) -> None:
    count = services.requeue_deferred_uploads(queryset)
    skipped = queryset.count() - count
    note = (
        f" {skipped} were left: only a dead upload whose file is still stored can be tried again."
        if skipped
        else ""
    )
    modeladmin.message_user(request, f"Queued {count} upload(s) again.{note}", messages.SUCCESS)


@admin.register(DeferredUpload)
class DeferredUploadAdmin(admin.ModelAdmin):
    """Zips and large images a worker brings in: what each brought, or why it could not; read-only, apart
    from trying a dead one again."""

    list_display = [
        "pk",
        "campaign",
        "name",
        "kind",
        "byte_size",
        "state",
        "attempts",
        "error_code",
        "created_at",
    ]
    list_filter = ["state", "kind"]
    search_fields = ["name", "campaign__name", "error_message"]
    list_select_related = ["campaign"]
    fields = [
        "campaign", "name", "kind", "file", "byte_size", "state", "attempts", "max_attempts", "error_code",
        "error_message", "queued_at", "finished_at", "created_at", "results_json",
    ]  # fmt: skip
    readonly_fields = fields
    actions = [try_uploads_again]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_requeue_permission(self, request) -> bool:
        return request.user.has_perm("dashboard.change_deferredupload")

    @admin.display(description="Results")
    def results_json(self, upload: DeferredUpload) -> str:
        return format_html("<pre>{}</pre>", json.dumps(upload.results, indent=2, ensure_ascii=False))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every run-finished webhook and each try; read-only, apart from sending one again."""

    list_display = [
        "pk",
        "campaign",
        "run_number",
        "event",
        "state",
        "attempts",
        "last_status_code",
        "created_at",
    ]
    list_filter = ["state", "event"]
    search_fields = ["campaign__name", "last_error"]
    list_select_related = ["campaign"]
    fields = [
        "campaign",
        "event",
        "run_number",
        "url",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "payload_json",
        "log_table",
    ]
    readonly_fields = fields
    actions = [send_again]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("dashboard.change_webhookdelivery")

    @admin.display(description="Payload")
    def payload_json(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2, ensure_ascii=False))

    @admin.display(description="Tries")
    def log_table(self, delivery: WebhookDelivery) -> str:
        rows = (
            (
                entry.get("attempt", ""),
                entry.get("time", ""),
                entry.get("status") or "–",
                entry.get("duration_ms", ""),
                entry.get("error") or "ok",
            )
            for entry in delivery.log
        )
        return format_html(
            "<table><tr><th>try</th><th>time</th><th>HTTP</th><th>ms</th><th>result</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

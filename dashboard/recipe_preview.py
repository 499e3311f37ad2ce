"""Recipe preview in the admin: every output of the recipe as it stands in the change form (unsaved), rendered
on a sample image inside the request, with no queue, no worker and no provider call."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.forms import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse

from dashboard.ids import parse_id
from dashboard.intake import read_limited
from dashboard.models import Campaign, Provider, Recipe, RecipeOutput, RecipeStep, SourceImage
from jobs.errors import PermanentError, StepError
from jobs.imaging import decode_image, make_thumbnail, read_dimensions
from jobs.operations import KEPT_WHOLE, NOT_MADE, Operation, build_operation, note_messages
from jobs.outputs import OutputSpec
from jobs.rendering import run_pipeline

# Made by jobs.samples (a product on a studio sweep), so every install has something to preview on.
BUNDLED_SAMPLES = {
    "bundled-bottle": (0, "Blue bottle on a studio backdrop (bundled)"),
    "bundled-box": (1, "Red box on a studio backdrop (bundled)"),
    "bundled-ball": (2, "Green ball on a studio backdrop (bundled)"),
}
BUNDLED_SIZE = (1600, 1200)
RECENT_SOURCES = 30
MIME_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png", "avif": "image/avif"}


class PreviewError(Exception):
    """The preview cannot run; the message says why, for the admin."""


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes


@dataclass(frozen=True)
class PreviewStep:
    number: int
    operation: Operation
    provider: Provider | None

    @property
    def label(self) -> str:
        return self.operation.label


@dataclass(frozen=True)
class PreviewOutput:
    spec: OutputSpec
    data: bytes
    width: int
    height: int

    @property
    def byte_size(self) -> int:
        return len(self.data)

    @property
    def data_uri(self) -> str:
        return f"data:{MIME_TYPES[self.spec.format]};base64,{base64.b64encode(self.data).decode()}"


@dataclass
class RecipePreview:
    sample: Sample | None = None
    sample_thumbnail: str = ""
    sample_size: tuple[int, int] = (0, 0)
    steps: list[PreviewStep] = field(default_factory=list)
    outputs: list[PreviewOutput] = field(default_factory=list)
    processed_thumbnail: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # What the steps left to say about this sample (e.g. "kept whole: needs a plain backdrop").
    notes: list[str] = field(default_factory=list)
    not_made: list[str] = field(default_factory=list)

    @property
    def remote_steps(self) -> list[PreviewStep]:
        return [step for step in self.steps if step.provider is not None]


def sample_choices(user) -> list[tuple[str, str]]:
    """The bundled samples, then the newest source images of campaigns this admin can see."""
    sources = (
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(user))
        .select_related("campaign")
        .order_by("-pk")[:RECENT_SOURCES]
    )
    return [(key, label) for key, (_, label) in BUNDLED_SAMPLES.items()] + [
        (
            f"source-{source.pk}",
            f"{source.campaign.name}: {source.display_name} ({source.width}×{source.height})",
        )
        for source in sources
    ]


@functools.lru_cache(maxsize=len(BUNDLED_SAMPLES))
def bundled_sample(key: str) -> bytes:
    seed, _ = BUNDLED_SAMPLES[key]
    from jobs.samples import product_jpeg  # numpy: imported by the admin page that draws it, not by workers

    return product_jpeg(*BUNDLED_SIZE, seed=seed)


def read_sample(request: HttpRequest) -> Sample:
    """An uploaded file wins over the list; a source image only from a campaign the user can see."""
    upload = request.FILES.get("preview_file")
    if upload is not None:
        try:
            return Sample(upload.name, read_limited(upload, settings.PIXELMILL_MAX_UPLOAD_BYTES, upload.name))
        except PermanentError as error:
            raise PreviewError(f"{upload.name} {error.message}.") from error
    choice = request.POST.get("preview_sample", "")
    if choice in BUNDLED_SAMPLES:
        return Sample(BUNDLED_SAMPLES[choice][1], bundled_sample(choice))
    pk = parse_id(choice.removeprefix("source-")) if choice.startswith("source-") else None
    source = (
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user), pk=pk).first()
        if pk
        else None
    )
    if source is None:
        raise PreviewError("Pick a sample image from the list or upload one.")
    with source.file.open("rb") as handle:
        return Sample(source.display_name, handle.read())


def edited_rows(formset: BaseInlineFormSet) -> list:
    """The inline rows as the form has them now: deleted and untouched blank rows left out, by position."""
    rows = [
        (form.instance.position, index, form.instance)
        for index, form in enumerate(formset.forms)
        if form not in formset.deleted_forms and (form.has_changed() or form.instance.pk)
    ]
    return [instance for _, _, instance in sorted(rows, key=lambda row: row[:2])]


def formset_problems(formset: BaseInlineFormSet, noun: str) -> list[str]:
    problems = [f"{noun}s: {error}" for error in formset.non_form_errors()]
    for number, form in enumerate(formset.forms, start=1):
        for name, errors in form.errors.items():
            where = noun if name == "__all__" else f"{noun}, {name}"
            problems.extend(f"{where} (row {number}): {error}" for error in errors)
    return problems


def unsaved_recipe(
    model_admin: ModelAdmin, request: HttpRequest, recipe: Recipe
) -> tuple[list[PreviewStep], list[OutputSpec], list[str]]:
    """Steps and output specs from the change form's inline formsets, validated as saving would."""
    problems: list[str] = []
    obj = recipe if recipe.pk else None
    # Rows the user cannot edit are not in the form: those are previewed as saved.
    rows = {
        RecipeStep: list(recipe.steps.select_related("provider")) if obj else [],
        RecipeOutput: list(recipe.outputs.all()) if obj else [],
    }
    for formset_class, inline in model_admin.get_formsets_with_inlines(request, obj):
        if inline.model not in rows or not (
            inline.has_change_permission(request, obj) or inline.has_add_permission(request, obj)
        ):
            continue
        prefix = formset_class.get_default_prefix()
        formset = formset_class(**model_admin.get_formset_kwargs(request, recipe, inline, prefix))
        if formset.is_valid():
            rows[inline.model] = edited_rows(formset)
        else:
            problems.extend(formset_problems(formset, "Step" if inline.model is RecipeStep else "Output"))
    steps = [
        PreviewStep(number, build_operation(step.operation, step.params or {}), step.provider)
        for number, step in enumerate(rows[RecipeStep], start=1)
    ]
    specs = [output.as_spec() for output in rows[RecipeOutput]]
    if not problems and not specs:
        problems.append("The recipe has no outputs yet: add at least one to preview it.")
    return steps, specs, problems


def thumbnail_uri(image_bytes: bytes) -> str:
    return f"data:image/webp;base64,{base64.b64encode(image_bytes).decode()}"


def build_preview(model_admin: ModelAdmin, request: HttpRequest, recipe: Recipe) -> RecipePreview:
    preview = RecipePreview()
    preview.steps, specs, preview.problems = unsaved_recipe(model_admin, request, recipe)
    try:
        preview.sample = read_sample(request)
    except PreviewError as error:
        preview.problems.append(str(error))
    if preview.problems:
        return preview
    try:
        # Steps that name a provider run as Pixelmill's own local operation here: nobody pays for a preview.
        result = run_pipeline(
            preview.sample.data,
            [step.operation for step in preview.steps],
            specs,
            max_pixels=settings.PIXELMILL_MAX_PIXELS,
        )
        sample_image = decode_image(
            preview.sample.data, max_pixels=settings.PIXELMILL_MAX_PIXELS, min_size=(320, 320)
        )
    except StepError as error:
        step = getattr(error, "step", None)
        remote = next((s for s in preview.steps if s.operation.name == step and s.provider is not None), None)
        if remote is not None:
            # The local stand-in refused; the provider the step names may well manage it.
            preview.problems.append(
                f"At step {step}: our local version cannot preview this photo ({error.message.rstrip('.')}). "
                f"In real tasks this step runs at {remote.provider.name}, which this preview does not call."
            )
        else:
            preview.problems.append(f"At step {step}: {error.message}" if step else error.message)
        return preview
    preview.sample_thumbnail = thumbnail_uri(make_thumbnail(sample_image))
    preview.sample_size = read_dimensions(preview.sample.data, max_pixels=settings.PIXELMILL_MAX_PIXELS)
    preview.processed_thumbnail = thumbnail_uri(result.preview)
    preview.timings = result.timings
    preview.notes = note_messages(result.notes, KEPT_WHOLE)
    preview.not_made = note_messages(result.notes, NOT_MADE)
    preview.outputs = [PreviewOutput(r.spec, r.data, r.width, r.height) for r in result.outputs]
    return preview


def preview_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    """POST the whole change form here; answers an HTML fragment the change form shows under its inlines."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    object_id = request.POST.get("_preview_recipe", "")
    recipe = model_admin.get_object(request, object_id) if object_id else None
    if object_id and recipe is None:
        raise Http404("No such recipe")
    allowed = (
        model_admin.has_change_permission(request, recipe)
        if recipe is not None
        else model_admin.has_add_permission(request)
    )
    if not allowed:
        raise PermissionDenied
    preview = build_preview(model_admin, request, recipe or Recipe())
    return TemplateResponse(
        request,
        "admin/dashboard/recipe/preview.html",
        {"preview": preview},
        status=400 if preview.problems else 200,
    )

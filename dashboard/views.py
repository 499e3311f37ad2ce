"""The marketer's pages: campaigns, upload, generate from prompts, process, live progress, failures, downloads;
and the webhook fal calls when a generation is done."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Count, F, Prefetch, prefetch_related_objects
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from zipstream import ZipStream

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.causes import BY_SLUG, Cause
from dashboard.estimate_views import estimate_context
from dashboard.exports import campaign_zip
from dashboard.forms import (
    BudgetForm,
    CampaignForm,
    EstimateForm,
    GenerateForm,
    ProcessForm,
    RequeueForm,
    UploadForm,
    WebhookForm,
)
from dashboard.intake import ImportReport, UrlImportCounts, import_uploads, parse_url_list
from dashboard.models import (
    Campaign,
    Generation,
    Output,
    Provider,
    Recipe,
    SourceImage,
    Task,
    TaskQuerySet,
    UrlImport,
)
from dashboard.prompts import GenerationCounts
from jobs.errors import StepError
from jobs.generation import cancel_generation, web_policy, webhook_token
from jobs.providers.client import ProviderClient
from jobs.providers.fal import (
    DEFAULT_JWKS_URL,
    IMAGE_SIZE_PRESETS,
    FalKeyring,
    FalWebhook,
    WebhookRejectedError,
)
from jobs.queueing import get_process_queue
from jobs.webhooks import ensure_webhook_secret

GALLERY_PAGE_SIZE = 24
FAILURES_PAGE_SIZE = 50
REFUSALS_SHOWN = 50


@require_http_methods(["GET", "POST"])
def campaign_list(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        campaign = form.save(commit=False)
        campaign.created_by = request.user
        campaign.save()
        messages.success(request, f"Campaign “{campaign.name}” created. Add images to get started.")
        return redirect(campaign)
    campaigns = Campaign.objects.visible_to(request.user).select_related("team").with_counts()
    return render(request, "dashboard/campaign_list.html", {"campaigns": campaigns, "form": form})


@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render_campaign(request, visible_campaign(request, pk))


def render_campaign(
    request: HttpRequest,
    campaign: Campaign,
    *,
    generate_form: GenerateForm | None = None,
    webhook_form: WebhookForm | None = None,
) -> HttpResponse:
    sources = campaign.sources.prefetch_related(
        Prefetch(
            "tasks",
            # The gallery shows none of the recipe's definition or the task's timings (JSON per row).
            queryset=Task.objects.select_related("recipe_version__recipe").defer(
                "recipe_version__definition", "timings", "provider_calls"
            ),
        )
    )
    page = Paginator(sources, GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    for source in page.object_list:
        source.gallery_tasks = newest_per_recipe(source.tasks.all())
    # Outputs only for the tasks a tile shows, not for every earlier version's.
    prefetch_related_objects([item.task for s in page.object_list for item in s.gallery_tasks], "outputs")
    selected_recipes = set(campaign.recipes.filter(is_active=True).values_list("pk", flat=True))
    outputs = Output.objects.filter(task__campaign=campaign).tally()
    return render(
        request,
        "dashboard/campaign_detail.html",
        {
            "campaign": campaign,
            "progress": campaign.progress(),
            "has_tasks": campaign.tasks.exists(),
            "has_outputs": outputs["total"] > 0,
            "approved_count": outputs["approved"],
            "page": page,
            "selected_recipes": selected_recipes,
            **estimate_context(campaign, EstimateForm({"recipes": list(selected_recipes)})),
            "budget_form": BudgetForm(instance=campaign),
            "recipes": Recipe.objects.filter(is_active=True).prefetch_related("outputs"),
            "failures": Task.objects.for_campaign(campaign)
            .failed()
            .select_related("source", "recipe_version__recipe")[:10],
            "failure_causes": Task.objects.for_campaign(campaign).failed().causes(),
            "rule_breaking_outputs": outputs["breaking_rules"],
            **generation_context(request, campaign, generate_form),
            "url_imports": UrlImportCounts.for_campaign(campaign),
            "refused_urls": campaign.url_imports.filter(
                state__in=[UrlImport.State.FAILED, UrlImport.State.DEAD]
            ).order_by("-pk")[:REFUSALS_SHOWN],
            "retryable_urls": services.retryable_url_imports(campaign.url_imports.all()).count(),
            "webhook_form": webhook_form or WebhookForm(instance=campaign),
            "webhook_deliveries": campaign.webhook_deliveries.order_by("-created_at", "-pk")[:5],
        },
    )


@dataclass(frozen=True)
class GalleryTask:
    task: Task
    earlier_versions: int  # tasks of the same image on older versions of the recipe, left to the compare page


def newest_per_recipe(tasks: Iterable[Task]) -> list[GalleryTask]:
    """A tile shows each recipe's newest version: an image re-run on ten versions shows one card,
    saying how many earlier ones the version compare holds (240 cards a page took 240 ms to render)."""
    by_recipe: dict[int, list[Task]] = {}
    for task in tasks:
        by_recipe.setdefault(task.recipe_version.recipe_id, []).append(task)
    shown = []
    for versions in by_recipe.values():
        newest = max(versions, key=lambda task: (task.recipe_version.number, task.pk))
        shown.append(GalleryTask(newest, len(versions) - 1))
    return sorted(shown, key=lambda item: (item.task.recipe_version.recipe.name, item.task.pk))


@require_POST
def campaign_upload(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose at least one image or .zip archive to upload.")
        return redirect(campaign)
    report = import_uploads(campaign, form.cleaned_data["files"])
    report_import(request, report)
    if request.headers.get("HX-Request") or request.headers.get("Accept") == "application/json":
        return JsonResponse(
            {
                "accepted": len(report.accepted),
                "duplicates": report.duplicates,
                "refused": [{"name": r.name, "reason": r.reason} for r in report.refused],
            },
            status=200 if report.accepted or not report.refused else 422,
        )
    return redirect(campaign)


@require_POST
def campaign_import_urls(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue the pasted URLs for the workers to download; the progress panel shows them arrive."""
    campaign = visible_campaign(request, pk)
    urls = parse_url_list(request.POST.get("urls", ""))
    if not urls:
        messages.error(request, "Paste at least one image URL (one per line, or a CSV with the URL first).")
        return redirect(campaign)
    report = services.queue_url_imports(campaign, urls)
    if report.queued:
        messages.success(
            request,
            f"Importing {report.queued} URL{pluralize(report.queued)} in the background; "
            "the images appear here as they arrive.",
        )
    if report.already:
        messages.info(request, f"{report.already} URL{pluralize(report.already)} already imported, skipped.")
    for url, reason in report.refused[:REFUSALS_SHOWN]:
        messages.error(request, f"Refused {url}: {reason}.")
    return redirect(campaign)


@require_http_methods(["GET", "POST"])
def url_imports_requeue(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET; on POST the URLs that could not be imported are tried again."""
    campaign = visible_campaign(request, pk)
    refused = services.retryable_url_imports(campaign.url_imports.all())
    if request.method == "POST":
        count = services.requeue_url_imports(refused)
        messages.success(request, f"Trying {count} URL{pluralize(count)} again.")
        return redirect(campaign)
    return render(
        request,
        "dashboard/confirm_url_retry.html",
        {"campaign": campaign, "count": refused.count(), "action": request.path},
    )


def report_import(request: HttpRequest, report: ImportReport) -> None:
    """One message for what came in, one per refused file naming it and the reason."""
    if report.accepted:
        messages.success(request, f"Added {len(report.accepted)} image(s).")
    if report.duplicates:
        messages.info(request, f"{len(report.duplicates)} already in this campaign, skipped.")
    for refusal in report.refused[:REFUSALS_SHOWN]:
        messages.error(request, f"Refused {refusal.name}: {refusal.reason.rstrip('.')}.")
    if len(report.refused) > REFUSALS_SHOWN:
        messages.error(request, f"…and {len(report.refused) - REFUSALS_SHOWN} more refused files.")


@require_POST
def campaign_process(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    form = ProcessForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["recipes"][0])
        return redirect(campaign)
    if not campaign.sources.exists():
        messages.error(request, "Upload some images first.")
        return redirect(campaign)
    report = services.process_campaign(campaign, form.cleaned_data["recipes"])
    if report.created:
        messages.success(request, f"Processing {report.created} task(s).")
    else:
        messages.info(request, "Nothing new to process: every image already has these recipe versions.")
    return redirect(campaign)


@require_GET
def campaign_progress(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    progress = campaign.progress()
    generations = GenerationCounts.for_campaign(campaign)
    url_imports = UrlImportCounts.for_campaign(campaign)
    if request.GET.get("format") == "json":
        return JsonResponse(
            {
                "total": progress.total,
                "done": progress.done,
                "percent": progress.percent,
                "counts": progress.counts,
                "retrying": progress.retrying,
                "per_minute": round(progress.per_minute, 1),
                "eta_seconds": progress.eta_seconds,
                "generations": generations.as_dict(),
                "url_imports": url_imports.as_dict(),
            }
        )
    response = render(
        request,
        "dashboard/_progress.html",
        {"campaign": campaign, "progress": progress, "generations": generations, "url_imports": url_imports},
    )
    settled = progress.is_finished or (not progress.total and (generations.total or url_imports.total))
    if request.GET.get("live") and settled and not generations.unfinished and not url_imports.unfinished:
        # The run just finished under a watching page: reload it so the gallery shows the results.
        response["HX-Refresh"] = "true"
    return response


def failure_selection(
    request: HttpRequest, campaign: Campaign
) -> tuple[TaskQuerySet, Cause | None, str | None]:
    """The campaign's failures, narrowed by `?cause=` (a group on the failures page) and/or `?code=`."""
    failures = Task.objects.for_campaign(campaign).failed()
    cause = BY_SLUG.get(request.GET.get("cause", ""))
    if cause is not None:
        failures = failures.with_cause(cause.slug)
    code = request.GET.get("code")
    if code is not None:
        failures = failures.filter(error_code=code)
    return failures, cause, code


@require_GET
def campaign_failures(request: HttpRequest, pk: int) -> HttpResponse:
    """Failures grouped by cause in plain words, so a whole group can be requeued once its cause is fixed."""
    campaign = visible_campaign(request, pk)
    groups = Task.objects.for_campaign(campaign).failed().causes()
    failures, cause, code = failure_selection(request, campaign)
    failures = failures.select_related("source", "recipe_version__recipe")
    page = Paginator(failures, FAILURES_PAGE_SIZE).get_page(request.GET.get("page"))
    selection = "&".join(
        f"{key}={quote(value)}"
        for key, value in (("cause", cause and cause.slug), ("code", code))
        if value is not None
    )
    return render(
        request,
        "dashboard/failures.html",
        {
            "campaign": campaign,
            "page": page,
            "groups": groups,
            "cause": cause,
            "code": code,
            "selection": selection,
        },
    )


@require_http_methods(["GET", "POST"])
def requeue_failed(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET, act on POST (the django-rq and admin-action pattern); `cause` or `code` narrows the
    group. The confirmation also offers the current recipe versions and another provider for a failing step."""
    campaign = visible_campaign(request, pk)
    failures, cause, code = failure_selection(request, campaign)
    steps = sorted(set(failures.order_by().exclude(error_step="").values_list("error_step", flat=True)))
    form = RequeueForm(request.POST if request.method == "POST" else None, steps=steps)
    if request.method == "POST" and form.is_valid():
        overrides = form.provider_overrides()
        on_current = form.cleaned_data.get("version") == "current"
        if overrides or on_current:
            report = services.requeue_differently(
                failures, on_current_version=on_current, provider_overrides=overrides
            )
            messages.success(request, requeue_message(report, form))
        else:
            messages.success(request, f"Requeued {services.requeue_tasks(failures)} task(s).")
        return redirect(campaign)
    stale = failures.exclude(recipe_version__number=F("recipe_version__recipe__version")).count()
    return render(
        request,
        "dashboard/confirm_requeue.html",
        {
            "campaign": campaign,
            "count": failures.count(),
            "action": request.get_full_path(),
            "cause": cause,
            "code": code,
            "form": form,
            "stale": stale,
        },
    )


def requeue_message(report: services.RequeueReport, form: RequeueForm) -> str:
    text = f"Requeued {report.requeued} task(s)"
    if report.moved:
        text += f", {report.moved} of them on the current recipe version"
    text += "".join(f"; {change}" for change in form.describe_overrides()) + "."
    if report.kept:
        text += f" {report.kept} already had a task on the current version and were left as they are."
    return text


@require_POST
def campaign_webhook(request: HttpRequest, pk: int) -> HttpResponse:
    """Set or clear where the campaign's run-finished webhook goes; the signing secret exists from then on."""
    campaign = visible_campaign(request, pk)
    data = {"webhook_url": ""} if request.POST.get("action") == "clear" else request.POST
    form = WebhookForm(data, instance=campaign)
    if not form.is_valid():
        response = render_campaign(request, campaign, webhook_form=form)
        response.status_code = 400
        return response
    form.save()
    if campaign.webhook_url:
        ensure_webhook_secret(campaign)
        messages.success(request, "Webhook saved: each finished run is sent there, signed.")
    else:
        messages.success(request, "Webhook removed.")
    return redirect(campaign)


@require_POST
def campaign_resume_remote(request: HttpRequest, pk: int) -> HttpResponse:
    """The provider's credits were topped up: paused tasks go back on the queue."""
    campaign = visible_campaign(request, pk)
    count = services.resume_remote_work(campaign)
    messages.success(request, f"Remote work resumed; {count} waiting task(s) are back on the queue.")
    return redirect(campaign)


@require_http_methods(["GET", "POST"])
def task_requeue(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(
        Task.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "campaign", "source"
        ),
        pk=pk,
    )
    if request.method == "POST":
        if services.requeue_tasks(Task.objects.filter(pk=task.pk)):
            messages.success(request, f"Requeued {task.source.display_name}.")
        else:
            messages.info(request, f"{task.source.display_name} is not failed; nothing to requeue.")
        return redirect(task.campaign)
    return render(
        request,
        "dashboard/confirm_requeue.html",
        {"campaign": task.campaign, "task": task, "count": 1, "action": request.path},
    )


def serve_file(name: str, *, download_name: str | None = None) -> FileResponse:
    if not name or not default_storage.exists(name):
        raise Http404("File not found")
    response = FileResponse(
        default_storage.open(name, "rb"),
        as_attachment=download_name is not None,
        filename=download_name or "",
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def output_download(request: HttpRequest, pk: int) -> FileResponse:
    output = get_object_or_404(
        Output.objects.filter(task__campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "task__source"
        ),
        pk=pk,
    )
    stem = PurePosixPath(output.task.source.display_name).stem
    name = f"{stem}-{output.name}{PurePosixPath(output.file.name).suffix}"
    return serve_file(output.file.name, download_name=name if request.GET.get("inline") != "1" else None)


@require_GET
def task_preview(request: HttpRequest, pk: int) -> FileResponse:
    task = get_object_or_404(
        Task.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(task.preview.name)


@require_GET
def source_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    source = get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(source.thumbnail.name)


@require_GET
def campaign_download(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every output, or with ?approved=1 only the approved ones (what a share link hands out)."""
    campaign = visible_campaign(request, pk)
    approved_only = request.GET.get("approved") == "1"
    suffix = "-approved" if approved_only else ""
    return zip_response(campaign_zip(campaign, approved_only=approved_only), campaign.archive_name(suffix))


def zip_response(archive: ZipStream, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(archive, content_type="application/zip")
    response["Content-Length"] = str(len(archive))
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Too many files or too much form data is a 413 with a way out, not a bare 400."""
    if isinstance(exception, (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig)):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        message = f"That upload is too large for one request (at most {limit} files). Send it in batches or as .zip archives."
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"error": message}, status=413)
        return render(
            request, "dashboard/error.html", {"title": "Upload too large", "message": message}, status=413
        )
    return render(
        request,
        "dashboard/error.html",
        {"title": "Bad request", "message": "The request could not be understood."},
        status=400,
    )


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


# Generation from prompts.

GENERATIONS_PAGE_SIZE = 50


def generation_context(
    request: HttpRequest, campaign: Campaign, generate_form: GenerateForm | None
) -> dict[str, object]:
    """The form (only when a fal provider is set up), the counts and one page of the campaign's generations."""
    if generate_form is None and Provider.objects.filter(kind=Provider.Kind.FAL, is_active=True).exists():
        generate_form = GenerateForm()
    generations = (
        campaign.generations.select_related("provider").annotate(image_count=Count("sources")).order_by("pk")
    )
    return {
        "generate_form": generate_form,
        "image_size_presets": IMAGE_SIZE_PRESETS,
        "generations": GenerationCounts.for_campaign(campaign),
        "generation_page": Paginator(generations, GENERATIONS_PAGE_SIZE).get_page(request.GET.get("gpage")),
    }


@require_POST
def campaign_generate(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    form = GenerateForm(request.POST, request.FILES)
    if not form.is_valid():
        # Shown again with the prompts as typed, so one bad line does not cost the whole list.
        messages.error(
            request, "Nothing was generated: some prompts need fixing (see “Generate from prompts” below)."
        )
        response = render_campaign(request, campaign, generate_form=form)
        response.status_code = 400
        return response
    count = services.queue_generations(campaign, form.cleaned_data["provider"], form.cleaned_data["specs"])
    messages.success(request, f"Generating images for {count} prompt{'s' if count != 1 else ''}.")
    return redirect(campaign)


def visible_generation(request: HttpRequest, pk: int) -> Generation:
    return get_object_or_404(
        Generation.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "campaign", "provider"
        ),
        pk=pk,
    )


@require_http_methods(["GET", "POST"])
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET; on POST stop it here and at fal."""
    generation = visible_generation(request, pk)
    if request.method == "POST":
        if cancel_generation(generation):
            messages.success(request, f"Cancelled “{generation.prompt[:60]}”.")
        else:
            messages.info(request, f"“{generation.prompt[:60]}” had already finished; nothing to cancel.")
        return redirect(generation.campaign)
    return render(
        request,
        "dashboard/confirm_generation.html",
        {"campaign": generation.campaign, "generation": generation, "verb": "cancel", "action": request.path},
    )


@require_http_methods(["GET", "POST"])
def generation_requeue(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET; on POST a failed or dead generation goes back on the queue."""
    generation = visible_generation(request, pk)
    if request.method == "POST":
        if services.requeue_generations(Generation.objects.filter(pk=generation.pk)):
            messages.success(request, f"Requeued “{generation.prompt[:60]}”.")
        else:
            messages.info(request, f"“{generation.prompt[:60]}” is not failed; nothing to requeue.")
        return redirect(generation.campaign)
    return render(
        request,
        "dashboard/confirm_generation.html",
        {
            "campaign": generation.campaign,
            "generation": generation,
            "verb": "requeue",
            "action": request.path,
        },
    )


@csrf_exempt
@login_not_required
@require_POST
def fal_webhook(request: HttpRequest, token: str) -> HttpResponse:
    """fal says a request finished. Verified as fal documents it (ED25519 over request id, user id,
    timestamp and the body's SHA-256, keys from its JWKS); the work itself happens in a worker."""
    if not constant_time_compare(token, webhook_token()):
        raise Http404("Not found")
    try:
        webhook = FalWebhook.from_headers(request.headers)
        webhook.check_timestamp()
    except WebhookRejectedError as error:
        return JsonResponse({"error": error.message}, status=error.status)
    generation = Generation.objects.select_related("provider").filter(request_id=webhook.request_id).first()
    if generation is None:
        return JsonResponse({"error": "unknown request"}, status=404)
    jwks_url = str(generation.provider.options.get("jwks_url") or DEFAULT_JWKS_URL)
    connection = get_process_queue().connection
    try:
        with ProviderClient(
            generation.provider.config(), connection=connection, policy=web_policy()
        ) as client:
            FalKeyring(client, jwks_url, connection).verify(webhook, request.body)
    except WebhookRejectedError as error:
        return JsonResponse({"error": error.message}, status=error.status)
    except StepError as error:
        # fal's keys are out of reach right now; fal delivers again later, and polling goes on meanwhile.
        return JsonResponse({"error": f"cannot verify now: {error.message}"}, status=503)
    if generation.state in Generation.TERMINAL_STATES:
        return JsonResponse({"status": "already finished"})
    services.expedite_generation(generation)
    return JsonResponse({"status": "accepted"})

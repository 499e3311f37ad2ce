"""Running a campaign: process, live progress, failures by cause, requeueing, resuming paused remote work."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.causes import BY_SLUG, Cause
from dashboard.forms import ProcessForm, RequeueForm
from dashboard.generations import GenerationCounts
from dashboard.imports import UrlImportCounts
from dashboard.models import Campaign, Task, TaskQuerySet

FAILURES_PAGE_SIZE = 50


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

"""Running a campaign: process, live progress, failures by cause, requeueing, resuming paused remote work."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_GET, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.causes import BY_SLUG, Cause
from dashboard.forms import ProcessForm, RequeueForm
from dashboard.intake import UrlImportCounts
from dashboard.models import Campaign, Task, TaskQuerySet
from dashboard.prompts import GenerationCounts
from dashboard.views.confirmation import Confirmation, ConfirmThenActView

FAILURES_PAGE_SIZE = 50
REQUEUE_CONSEQUENCE = (
    "goes back into the queue with a fresh set of attempts. Work already paid for is not repeated."
)


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
                # Uploads handed to the workers (zips, large images) not brought in yet.
                "uploads_checking": campaign.deferred_uploads.unfinished().count(),
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
    # The page's ids first, from the failed tasks' own index in id order, then those 50 rows with their
    # image and recipe: paging the joined rows had PostgreSQL join and sort every failure of the campaign
    # before the OFFSET (68 ms for the last of 61 pages).
    page = Paginator(failures.values_list("pk", flat=True), FAILURES_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    page.object_list = list(
        failures.filter(pk__in=list(page.object_list)).select_related("source", "recipe_version__recipe")
    )
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


class RequeueFailed(ConfirmThenActView):
    """A campaign's failures, or the group `cause` or `code` narrows them to, go back on the queue. The
    confirmation also offers the current recipe versions and another provider for a failing step."""

    def load(self) -> None:
        self.campaign = visible_campaign(self.request, self.kwargs["pk"])
        self.failures, self.cause, _ = failure_selection(self.request, self.campaign)
        steps = self.failures.order_by().exclude(error_step="").values_list("error_step", flat=True)
        data = self.request.POST if self.request.method == "POST" else None
        self.form = RequeueForm(data, steps=sorted(set(steps)))

    def confirmation(self) -> Confirmation:
        count = self.failures.count()
        stale = self.failures.exclude(recipe_version__number=F("recipe_version__recipe__version")).count()
        group = f" ({self.cause.label.lower()})" if self.cause else ""
        return Confirmation(
            title="Requeue",
            question=f"Requeue {count} failed task{pluralize(count)}{group}?",
            consequence=f"Each of them {REQUEUE_CONSEQUENCE}",
            button="Yes, requeue",
            back_url=self.campaign.get_absolute_url(),
            ready=bool(count),
            options_template="dashboard/_requeue_options.html" if count else "",
            options={"form": self.form, "stale": stale},
            wide=bool(self.form.provider_fields or stale),
        )

    def act(self) -> HttpResponse:
        if not self.form.is_valid():
            return self.confirm_page()
        overrides = self.form.provider_overrides()
        on_current = self.form.cleaned_data.get("version") == "current"
        if overrides or on_current:
            report = services.requeue_differently(
                self.failures, on_current_version=on_current, provider_overrides=overrides
            )
            messages.success(self.request, requeue_message(report, self.form))
        else:
            messages.success(self.request, f"Requeued {services.requeue_tasks(self.failures)} task(s).")
        return redirect(self.campaign)


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


class TaskRequeue(ConfirmThenActView):
    """One failed task goes back on the queue."""

    def load(self) -> None:
        self.task = get_object_or_404(
            Task.objects.filter(campaign__in=Campaign.objects.visible_to(self.request.user)).select_related(
                "campaign", "source"
            ),
            pk=self.kwargs["pk"],
        )

    def confirmation(self) -> Confirmation:
        return Confirmation(
            title="Requeue",
            question=f"Requeue {self.task.source.display_name}?",
            consequence=f"This image {REQUEUE_CONSEQUENCE}",
            button="Yes, requeue",
            back_url=self.task.campaign.get_absolute_url(),
        )

    def act(self) -> HttpResponse:
        name = self.task.source.display_name
        if services.requeue_tasks(Task.objects.filter(pk=self.task.pk)):
            messages.success(self.request, f"Requeued {name}.")
        else:
            messages.info(self.request, f"{name} is not failed; nothing to requeue.")
        return redirect(self.task.campaign)

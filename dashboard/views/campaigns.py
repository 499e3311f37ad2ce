"""The campaign list and a campaign's page: its gallery, the forms on it, and where its webhook goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.forms import BudgetForm, CampaignForm, EstimateForm, GenerateForm, WebhookForm
from dashboard.gallery import REVIEW_CHOICES, STATE_CHOICES, GalleryFilter, newest_per_recipe
from dashboard.intake import UrlImportCounts
from dashboard.models import Campaign, Output, Provider, Recipe, Task, UrlImport
from dashboard.prompts import GenerationCounts
from dashboard.views.estimates import estimate_context
from dashboard.views.intake import REFUSALS_SHOWN, remembered_upload
from jobs.providers.fal import IMAGE_SIZE_PRESETS

GALLERY_PAGE_SIZE = 24
CAMPAIGNS_PAGE_SIZE = 25
GENERATIONS_PAGE_SIZE = 50


@require_http_methods(["GET", "POST"])
def campaign_list(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        campaign = form.save(commit=False)
        campaign.created_by = request.user
        campaign.save()
        messages.success(request, f"Campaign “{campaign.name}” created. Add images to get started.")
        return redirect(campaign)
    # Newest first, a page at a time: a year of campaigns is hundreds of rows, each with its counts.
    page = Paginator(
        Campaign.objects.visible_to(request.user).select_related("team"), CAMPAIGNS_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    campaigns = page.object_list.counted()
    for campaign in campaigns:
        campaign.run_bar = RunBar(campaign.task_count, campaign.done_count, campaign.failed_count)
    return render(
        request, "dashboard/campaign_list.html", {"campaigns": campaigns, "page": page, "form": form}
    )


@dataclass(frozen=True)
class RunBar:
    """A campaign's tasks in the list: how many finished, and of those how many succeeded or failed."""

    total: int
    done: int
    failed: int

    @property
    def succeeded(self) -> int:
        return self.done - self.failed  # a finished task succeeded, failed or died

    @property
    def to_go(self) -> int:
        return self.total - self.done

    @property
    def percent(self) -> int:
        # Rounded down, as the campaign page's progress is: 100% only when everything is done.
        return 100 * self.done // self.total if self.total else 0

    @property
    def succeeded_width(self) -> str:
        return f"{100 * self.succeeded / self.total:.2f}" if self.total else "0"

    @property
    def failed_width(self) -> str:
        return f"{100 * self.failed / self.total:.2f}" if self.total else "0"


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
    gallery_filter = GalleryFilter.from_query(request.GET)
    sources = gallery_filter.sources(campaign).prefetch_related(
        Prefetch(
            "tasks",
            # The gallery shows none of the recipe's definition or the task's timings (JSON per row).
            queryset=Task.objects.select_related("recipe_version__recipe").defer(
                "recipe_version__definition", "timings", "provider_calls"
            ),
        )
    )
    # The campaign's images are counted once for the page, the gallery's pager and the estimate.
    image_count = campaign.sources.count()
    paginator = Paginator(sources, GALLERY_PAGE_SIZE)
    if not gallery_filter.is_active:
        paginator.count = image_count  # a cached_property: the pager takes this count as its own
    page = paginator.get_page(request.GET.get("page"))
    for source in page.object_list:
        source.gallery_tasks = newest_per_recipe(source.tasks.all())
    # Outputs only for the tasks a tile shows, not for every earlier version's.
    prefetch_related_objects(
        [item.task for s in page.object_list for item in s.gallery_tasks],
        Prefetch("outputs", queryset=Output.objects.with_earlier_approval()),
    )
    if gallery_filter.is_active:
        for source in page.object_list:
            source.gallery_tasks = [item for item in source.gallery_tasks if gallery_filter.shows(item.task)]
    selected_recipes = set(campaign.recipes.filter(is_active=True).values_list("pk", flat=True))
    outputs = Output.objects.filter(task__campaign=campaign).tally()
    progress = campaign.progress()
    has_tasks = progress.total > 0 or campaign.tasks.exists()  # a run's tasks are the campaign's
    estimate = estimate_context(campaign, EstimateForm({"recipes": list(selected_recipes)}), image_count)
    failure_causes = Task.objects.for_campaign(campaign).failed().causes()
    recipe_updates = campaign.recipe_updates()
    url_imports = UrlImportCounts.for_campaign(campaign)
    # Which imports were refused, and whether another try could help, only asked when some were.
    refused_urls = (
        list(
            campaign.url_imports.filter(state__in=[UrlImport.State.FAILED, UrlImport.State.DEAD]).order_by(
                "-pk"
            )[:REFUSALS_SHOWN]
        )
        if url_imports.refused
        else []
    )
    webhook_form = webhook_form or WebhookForm(instance=campaign)
    upload_results = remembered_upload(request, campaign)
    return render(
        request,
        "dashboard/campaign_detail.html",
        {
            "campaign": campaign,
            "progress": progress,
            "has_tasks": has_tasks,
            "has_outputs": outputs["total"] > 0,
            "outputs": outputs,
            "approved_count": outputs["approved"],
            "image_count": image_count,
            "page": page,
            "gallery_filter": gallery_filter,
            "state_choices": STATE_CHOICES,
            "review_choices": REVIEW_CHOICES,
            "gallery_recipes": [update.recipe for update in recipe_updates],
            "selected_recipes": selected_recipes,
            **estimate,
            "budget_form": BudgetForm(instance=campaign),
            "recipes": Recipe.objects.filter(is_active=True).prefetch_related("outputs"),
            "failure_causes": failure_causes,
            "failed_count": sum(group.count for group in failure_causes),
            "recipe_updates": [u for u in recipe_updates if u.has_new_version or u.can_compare],
            "rule_breaking_outputs": outputs["breaking_rules"],
            **generation_context(request, campaign, generate_form),
            "upload_results": upload_results,
            # The drop zone cuts a larger upload into batches that each fit one request.
            "upload_limits": {
                "bytes": settings.PIXELMILL_MAX_REQUEST_BYTES,
                "files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
            },
            "upload_needs_a_look": upload_needs_a_look(upload_results),
            "url_imports": url_imports,
            "refused_urls": refused_urls,
            "retryable_urls": services.retryable_url_imports(campaign.url_imports.all()).count()
            if refused_urls
            else 0,
            "webhook_form": webhook_form,
            "webhook_deliveries": campaign.webhook_deliveries.order_by("-created_at", "-pk")[:5],
            "open_sections": {
                # Folded by default except where the next step is: images to add, work to start, results.
                # An upload that refused or skipped files, or is still being checked, keeps its results
                # in view; one that simply added its images shows them in the gallery instead.
                "add_images": not image_count or upload_needs_a_look(upload_results),
                "process": images_wait_for_a_run(campaign),
                "gallery": bool(image_count) or gallery_filter.is_active,
                "deliver": outputs["approved"] > 0 or webhook_form.is_bound,
            },
        },
    )


def images_wait_for_a_run(campaign: Campaign) -> bool:
    """The newest image has no task yet: images came in since the last Process. Two index probes in one
    query, where looking for any image without a task read every image of a large campaign (22 ms at 50,000)."""
    newest_has_task = (
        campaign.sources.order_by("-pk")
        .annotate(has_task=Exists(Task.objects.filter(source=OuterRef("pk"))))
        .values_list("has_task", flat=True)
        .first()
    )
    return newest_has_task is False  # None: no image at all


def generation_context(
    request: HttpRequest, campaign: Campaign, generate_form: GenerateForm | None
) -> dict[str, object]:
    """The form (only when a fal provider is set up), the counts and one page of the campaign's generations."""
    if generate_form is None and Provider.objects.filter(kind=Provider.Kind.FAL, is_active=True).exists():
        generate_form = GenerateForm()
    generations = (
        campaign.generations.select_related("provider").annotate(image_count=Count("sources")).order_by("pk")
    )
    counts = GenerationCounts.for_campaign(campaign)
    paginator = Paginator(generations, GENERATIONS_PAGE_SIZE)
    paginator.count = counts.total  # the counts cover every state: the pager need not count again
    return {
        "generate_form": generate_form,
        "image_size_presets": IMAGE_SIZE_PRESETS,
        "generations": counts,
        "generation_page": paginator.get_page(request.GET.get("gpage")),
    }


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
        campaign.ensure_webhook_secret()
        messages.success(request, "Webhook saved: each finished run is sent there, signed.")
    else:
        messages.success(request, "Webhook removed.")
    return redirect(campaign.get_absolute_url() + "#webhook")


def upload_needs_a_look(results: dict[str, Any] | None) -> bool:
    """The last upload refused or skipped a file, or the workers are still bringing some in."""
    if not results:
        return False
    counts = results["counts"]
    return bool(counts["refused"] or counts["duplicates"] or counts["checking"])

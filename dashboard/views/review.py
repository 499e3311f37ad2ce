"""Reviewing outputs: compare with the source or another version, approve or reject, re-run on a new version."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.ids import parse_id
from dashboard.models import Campaign, Output, Provider, Recipe, RecipeVersion, Task
from dashboard.source_windows import source_window_of
from dashboard.version_compare import compare_sources, definition_changes
from dashboard.views.confirmation import Confirmation, ConfirmThenActView
from jobs.rendering import Box

VERSION_COMPARE_PAGE_SIZE = 8

DECISION_VERBS = {
    Output.Review.APPROVED: "Approved",
    Output.Review.REJECTED: "Rejected",
    Output.Review.PENDING: "Back to review:",
}


def visible_output(request: HttpRequest, pk: int) -> Output:
    return get_object_or_404(
        Output.objects.visible_to(request.user)
        .with_earlier_approval()
        .select_related("task__source", "task__campaign", "task__recipe_version__recipe"),
        pk=pk,
    )


def requested_decision(request: HttpRequest) -> str | None:
    decision = request.POST.get("decision", "")
    return decision if decision in Output.Review.values else None


def redirect_back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Back to the page the form was on (`next`), when that is a page of this site."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = fallback
    return redirect(target)


@dataclass(frozen=True)
class ComparedImage:
    """What the left of the comparison shows: the source, or the same output of another version.

    `window` is the part of the source the output shows (fractions): the wipe shows the source cut to it,
    so the two line up, and side by side outlines it on the whole source. None: shown whole.
    """

    src: str
    label: str
    name: str
    width: int
    height: int
    window: Box | None = None

    @property
    def window_style(self) -> str:
        """The window as CSS custom properties (percentages of the source) and the source's shape."""
        if self.window is None:
            return ""
        left, top, right, bottom = self.window
        percentages = {"wx": left, "wy": top, "ww": right - left, "wh": bottom - top}
        numbers = "; ".join(f"--{name}: {value * 100:.4f}" for name, value in percentages.items())
        return f"{numbers}; aspect-ratio: {self.width} / {self.height}"

    @property
    def shape(self) -> str:
        return "landscape" if self.width >= self.height else "portrait"


@require_GET
def output_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """One output next to its source, or (?against=<output>) next to the same output of another version."""
    output = visible_output(request, pk)
    task = output.task
    others = (
        Output.objects.filter(
            task__source=task.source,
            task__recipe_version__recipe=task.recipe_version.recipe,
            name=output.name,
        )
        .exclude(pk=output.pk)
        .select_related("task__recipe_version")
        .order_by("-task__recipe_version__number")
    )
    against_id = parse_id(request.GET.get("against"))
    against = others.filter(pk=against_id).first() if against_id else None
    if against is not None:
        before = ComparedImage(
            src=reverse("output-download", args=[against.pk]) + "?inline=1",
            label=f"v{against.task.recipe_version.number}",
            name=against.name,
            width=against.width,
            height=against.height,
        )
    else:
        before = ComparedImage(
            src=reverse("source-original", args=[task.source_id]),
            label="Original",
            name=task.source.display_name,
            width=task.source.width,
            height=task.source.height,
            window=source_window_of(output),
        )
    return render(
        request,
        "dashboard/output_compare.html",
        {
            "campaign": task.campaign,
            "output": output,
            "output_as_list": [output],  # for the rule flags, shared with the gallery
            "task": task,
            "source": task.source,
            "siblings": task.outputs.order_by("pk"),
            "other_versions": others,
            "against": against,
            "before": before,
            "review_counts": task.review_counts(),
            "next_to_review": next_to_review(output),
        },
    )


def next_to_review(output: Output) -> Output | None:
    """The next output of the campaign still waiting for a decision, after this one (then from the top)."""
    waiting = (
        Output.objects.filter(task__campaign_id=output.task.campaign_id)
        .pending_review()
        .exclude(pk=output.pk)
        .order_by("task_id", "pk")
    )
    after = waiting.filter(Q(task_id__gt=output.task_id) | Q(task_id=output.task_id, pk__gt=output.pk))
    return after.first() or waiting.first()


@require_POST
def output_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject one output (or send it back to review); one click undoes it, so no confirmation."""
    output = visible_output(request, pk)
    decision = requested_decision(request)
    if decision is None:
        return HttpResponseBadRequest("decision must be approved, rejected or pending")
    output.record_review(decision, request.user)
    messages.success(
        request, f"{DECISION_VERBS[decision]} {output.name} of {output.task.source.display_name}."
    )
    return redirect_back(request, fallback=reverse("output-compare", args=[output.pk]))


@require_POST
def task_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject every output of one image in one recipe version."""
    task = get_object_or_404(
        Task.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "campaign", "source", "recipe_version__recipe"
        ),
        pk=pk,
    )
    decision = requested_decision(request)
    if decision is None:
        return HttpResponseBadRequest("decision must be approved, rejected or pending")
    count = task.outputs.all().record_review(decision, request.user)
    messages.success(
        request,
        f"{DECISION_VERBS[decision]} all {count} output{'s' if count != 1 else ''} of "
        f"{task.source.display_name} ({task.recipe_version}).",
    )
    return redirect_back(request, fallback=task.campaign.get_absolute_url())


@require_GET
def version_compare(request: HttpRequest, pk: int, recipe_pk: int) -> HttpResponse:
    """Two versions of one recipe in this campaign, output beside output (?before=&after= pick the numbers)."""
    campaign = visible_campaign(request, pk)
    recipe = get_object_or_404(Recipe, pk=recipe_pk)
    versions = list(
        RecipeVersion.objects.filter(recipe=recipe, tasks__campaign=campaign).distinct().order_by("-number")
    )
    if not versions:
        raise Http404("This campaign has no tasks for that recipe")
    by_number = {version.number: version for version in versions}
    after = by_number.get(parse_id(request.GET.get("after")), versions[0])
    before = by_number.get(parse_id(request.GET.get("before")), versions[1] if len(versions) > 1 else None)
    context = {"campaign": campaign, "recipe": recipe, "versions": versions, "before": before, "after": after}
    if before is not None and before != after:
        chosen = [before, after]
        sources = (
            campaign.sources.filter(tasks__recipe_version__in=chosen)
            .distinct()
            .order_by("pk")
            .prefetch_related(
                Prefetch(
                    "tasks",
                    queryset=Task.objects.filter(recipe_version__in=chosen).prefetch_related("outputs"),
                )
            )
        )
        page = Paginator(sources, VERSION_COMPARE_PAGE_SIZE).get_page(request.GET.get("page"))
        context |= {
            "page": page,
            "rows": compare_sources(list(page.object_list), before, after),
            "changes": definition_changes(
                before.definition, after.definition, dict(Provider.objects.values_list("slug", "name"))
            ),
        }
    return render(request, "dashboard/version_compare.html", context)


class CampaignRerun(ConfirmThenActView):
    """Every image gets a task on the recipe's current version. Earlier versions' outputs stay, so the two
    can be compared."""

    def load(self) -> None:
        self.campaign = visible_campaign(self.request, self.kwargs["pk"])
        self.recipe = get_object_or_404(
            self.campaign.recipes.filter(is_active=True), pk=self.kwargs["recipe_pk"]
        )

    def confirmation(self) -> Confirmation:
        recipe = self.recipe
        current = Task.objects.filter(
            campaign=self.campaign, recipe_version__recipe=recipe, recipe_version__number=recipe.version
        )
        waiting = self.campaign.sources.exclude(pk__in=current.values("source_id")).count()
        return Confirmation(
            title=f"Re-run on v{recipe.version}",
            question=f"Re-run {waiting} image{pluralize(waiting)} on {recipe.name} v{recipe.version}?",
            consequence=f"Each image of “{self.campaign.name}” that has no v{recipe.version} outputs yet is "
            "processed again with the recipe as it is now. The outputs you already have stay, with their "
            "approvals, so you can compare the two versions side by side.",
            button="Yes, re-run",
            back_url=self.campaign.get_absolute_url(),
            ready=bool(waiting),
        )

    def act(self) -> HttpResponse:
        recipe = self.recipe
        report = services.process_campaign(self.campaign, [recipe])
        if report.created:
            messages.success(
                self.request,
                f"Re-running {report.created} image{'s' if report.created != 1 else ''} on {recipe.name} "
                f"v{recipe.version}. The earlier outputs stay, so you can compare the two.",
            )
        else:
            messages.info(self.request, f"Every image already has {recipe.name} v{recipe.version}.")
        return redirect(self.campaign)

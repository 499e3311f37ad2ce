"""Before pressing Process: the run's estimate (cost, time, workers for a deadline) and the budget cap."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_GET, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.estimates import describe_money, estimate_run
from dashboard.forms import BudgetForm, EstimateForm
from dashboard.models import Campaign


def estimate_context(
    campaign: Campaign, form: EstimateForm, image_count: int | None = None
) -> dict[str, object]:
    """The fragment's context; an invalid deadline is reported without losing the rest of the estimate."""
    form.is_valid()
    recipes = form.cleaned_data.get("recipes") or []
    estimate = estimate_run(campaign, recipes, image_count=image_count)
    deadline = form.cleaned_data.get("deadline")
    return {
        "campaign": campaign,
        "estimate": estimate,
        "estimate_form": form,
        "plan": estimate.plan_for(deadline) if deadline and estimate.tasks else None,
    }


@require_GET
def campaign_estimate(request: HttpRequest, pk: int) -> HttpResponse:
    """The estimate fragment for the recipes ticked right now; the Process form asks for it on each change."""
    campaign = visible_campaign(request, pk)
    return render(request, "dashboard/_estimate.html", estimate_context(campaign, EstimateForm(request.GET)))


@require_POST
def campaign_budget(request: HttpRequest, pk: int) -> HttpResponse:
    """Set, raise or clear the budget cap; raising it past what was spent resumes the work it paused."""
    campaign = visible_campaign(request, pk)
    form = BudgetForm(request.POST, instance=campaign)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["budget_cap"]))
        return redirect(campaign.get_absolute_url() + "#budget-form")
    cap = form.cleaned_data["budget_cap"]
    resumed = services.set_budget_cap(campaign, cap)
    text = "Budget cap removed." if cap is None else f"Budget cap set to {describe_money(cap)}."
    if resumed:
        text += f" Remote work resumed: {resumed} waiting task{pluralize(resumed)} {pluralize(resumed, 'is,are')} back on the queue."
    elif campaign.remote_paused_code == "budget_reached" and cap is not None:
        messages.warning(
            request,
            f"{text} It is still reached ({describe_money(campaign.remote_spent)} spent): raise it above "
            "that to resume remote work.",
        )
        return redirect(campaign.get_absolute_url() + "#budget-form")
    messages.success(request, text)
    return redirect(campaign.get_absolute_url() + "#budget-form")

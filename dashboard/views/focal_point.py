"""Choosing an image's subject point: a page to click it on (GET), and setting or resetting it (POST)."""

from __future__ import annotations

import math

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from dashboard import services
from dashboard.models import Campaign, SourceImage


def visible_source(request: HttpRequest, pk: int) -> SourceImage:
    """Another team's image answers 404, exactly like one that does not exist."""
    return get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "campaign"
        ),
        pk=pk,
    )


def read_point(request: HttpRequest) -> tuple[float, float] | None:
    """The clicked point, each coordinate 0..1 of the picture; None when missing or not a number in range."""
    try:
        x, y = float(request.POST["x"]), float(request.POST["y"])
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= 1 and 0 <= y <= 1):
        return None
    return round(x, 4), round(y, 4)


@require_http_methods(["GET", "POST"])
def source_focal_point(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows the picture to click its subject on; POST sets that point (or with `reset`, goes back to
    detecting it) and renders again the image's outputs that crop around it."""
    source = visible_source(request, pk)
    if request.method == "POST":
        if "reset" in request.POST:
            point = None
        else:
            point = read_point(request)
            if point is None:
                messages.error(request, "Click on the picture to choose its subject.")
                return redirect("source-focal-point", source.pk)
        requeued = services.set_focal_point(source, point)
        chosen = "Subject point set" if point else "Subject found automatically again"
        again = f"; re-rendering {requeued} recipe{'s' if requeued != 1 else ''} of it" if requeued else ""
        messages.success(request, f"{chosen} for {source.display_name}{again}.")
        return redirect(reverse("campaign-detail", args=[source.campaign_id]) + f"#source-{source.pk}")
    return render(request, "dashboard/focal_point.html", {"campaign": source.campaign, "source": source})

"""What a signed-in user may reach: their team's campaigns; another team's answer 404."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from dashboard.models import Campaign


def visible_campaign(request: HttpRequest, pk: int) -> Campaign:
    """Another team's campaign answers 404, exactly like one that does not exist."""
    # The team rides along: the campaign page names it, and visible_to joins it anyway.
    return get_object_or_404(Campaign.objects.visible_to(request.user).select_related("team"), pk=pk)

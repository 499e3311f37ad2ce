"""Share links: anyone with one sees and downloads the approved outputs until it expires or is revoked (the
headers that keep the token private: dashboard/middleware.py)."""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import visible_campaign
from dashboard.exports import campaign_zip
from dashboard.forms import ShareLinkForm
from dashboard.models import Campaign, Output, ShareLink
from dashboard.renditions import output_thumbnail
from dashboard.views.confirmation import Confirmation, ConfirmThenActView
from dashboard.views.delivery import serve_rendition, zip_response

SHARED_PAGE_SIZE = 24


@require_POST
def share_link_create(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    form = ShareLinkForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick how long the link should work: 1, 7 or 30 days.")
        return redirect(campaign)
    link = ShareLink.issue(
        campaign, request.user, days=form.cleaned_data["days"], label=form.cleaned_data["label"]
    )
    approved = campaign.approved_output_count()
    until = date_format(timezone.localtime(link.expires_at), "DATETIME_FORMAT")
    messages.success(request, f"Share link created. It works until {until}, unless you revoke it.")
    if not approved:
        messages.info(
            request, "Nothing is approved yet: the link shows an empty page until you approve outputs."
        )
    return redirect(f"{campaign.get_absolute_url()}#share")


class ShareLinkRevoke(ConfirmThenActView):
    """The link stops working at once."""

    def load(self) -> None:
        self.link = get_object_or_404(
            ShareLink.objects.filter(
                campaign__in=Campaign.objects.visible_to(self.request.user)
            ).select_related("campaign"),
            pk=self.kwargs["pk"],
        )

    def confirmation(self) -> Confirmation:
        link = self.link
        downloads = link.download_count
        return Confirmation(
            title="Revoke share link",
            question=f"Revoke “{link.label or 'Share link'}”?",
            consequence=f"Anyone who has this link loses access to the approved images of “{link.campaign.name}” "
            f"at once. It was downloaded {downloads} time{pluralize(downloads)}. You can create a new link "
            "afterwards.",
            button="Yes, revoke",
            back_url=f"{link.campaign.get_absolute_url()}#share",
            ready=link.is_active,
        )

    def act(self) -> HttpResponse:
        if self.link.revoke(self.request.user):
            messages.success(self.request, "Share link revoked: it no longer works for anyone.")
        else:
            messages.info(self.request, "That share link was already revoked.")
        return redirect(f"{self.link.campaign.get_absolute_url()}#share")


def gone(request: HttpRequest, link: ShareLink | None) -> HttpResponse:
    """One page for every unusable link, worded for whoever was sent it: 410 when it existed, else 404."""
    status = 404 if link is None else 410
    return render(request, "dashboard/share_gone.html", {"link": link}, status=status)


def share_view(view):
    """A public share view gets the active link its token names; an unknown, altered, expired or
    revoked link answers with the explanation page instead, whatever was asked."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, token: str, *args, **kwargs) -> HttpResponse:
        link = ShareLink.objects.from_token(token)
        if link is None or not link.is_active:
            return gone(request, link)
        return view(request, link, *args, **kwargs)

    return wrapped


@login_not_required
@require_GET
@share_view
def shared_campaign(request: HttpRequest, link: ShareLink) -> HttpResponse:
    """Every approved picture, a page at a time, with the ZIP of all of them on each page."""
    approved = (
        Output.objects.filter(task__campaign=link.campaign)
        .approved()
        .select_related("task__source", "task__recipe_version__recipe")
        .order_by("task__source_id", "task_id", "pk")
    )
    page = Paginator(approved, SHARED_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboard/share_landing.html",
        {"link": link, "campaign": link.campaign, "page": page, "count": page.paginator.count},
    )


@login_not_required
@require_GET
@share_view
def shared_download(request: HttpRequest, link: ShareLink) -> HttpResponse | StreamingHttpResponse:
    link.record_download()
    archive = campaign_zip(link.campaign, approved_only=True)
    return zip_response(archive, link.campaign.archive_name("-approved"))


@login_not_required
@require_GET
@share_view
def shared_thumbnail(request: HttpRequest, link: ShareLink, pk: int) -> HttpResponseBase:
    output = get_object_or_404(Output.objects.filter(task__campaign=link.campaign).approved(), pk=pk)
    return serve_rendition(lambda: output_thumbnail(output))

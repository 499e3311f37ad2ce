"""Images coming in: uploads (files and .zip archives) and pasted URLs, and trying refused URLs again."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.forms import UploadForm
from dashboard.intake import ImportReport, import_uploads, parse_url_list
from dashboard.views.confirmation import Confirmation, ConfirmThenActView

REFUSALS_SHOWN = 50


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


class UrlImportsRequeue(ConfirmThenActView):
    """The URLs that could not be imported are tried again."""

    def load(self) -> None:
        self.campaign = visible_campaign(self.request, self.kwargs["pk"])
        self.refused = services.retryable_url_imports(self.campaign.url_imports.all())

    def confirmation(self) -> Confirmation:
        count = self.refused.count()
        return Confirmation(
            title="Try URLs again",
            question=f"Try {count} URL{pluralize(count)} again?",
            consequence="Each URL that could not be imported is downloaded again, with a fresh set of attempts. "
            "Images the campaign already holds are not added twice.",
            button="Yes, try again",
            back_url=self.campaign.get_absolute_url(),
            ready=bool(count),
        )

    def act(self) -> HttpResponse:
        count = services.requeue_url_imports(self.refused)
        messages.success(self.request, f"Trying {count} URL{pluralize(count)} again.")
        return redirect(self.campaign)


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

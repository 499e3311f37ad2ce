"""Images coming in: uploads (files and .zip archives) and pasted URLs, and trying refused URLs again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat, pluralize
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.intake import (
    RESULT_ROWS,
    UPLOAD_FIELD,
    ImportReport,
    Refusal,
    import_uploads,
    parse_url_list,
    shown_name,
)
from dashboard.models import Campaign, DeferredUpload
from dashboard.upload_reader import UploadReader
from dashboard.views.confirmation import Confirmation, ConfirmThenActView
from dashboard.views.errors import request_error, wants_json

REFUSALS_SHOWN = 50
# The session keeps each campaign's last upload results until dismissed: RESULT_ROWS rows of each kind (the
# counts stay exact), for the campaigns uploaded to most recently.
UPLOAD_RESULTS = "upload-results"
UPLOAD_RESULT_CAMPAIGNS = 10
RESULT_KINDS = ("accepted", "duplicates", "refused")
# The drop zone's fields besides the files: which upload a batch belongs to, and the files it did not send.
BATCH_FIELD = "upload"
OVERSIZED_FIELD = "oversized"
NO_FILES = "Choose at least one image or .zip archive to upload (no file arrived in the “files” field)."


@csrf_exempt
@require_POST
def campaign_upload(request: HttpRequest, pk: int) -> HttpResponse:
    """Read the upload with UploadReader, so that no file is lost to a bad name, then check the CSRF token:
    the check reads the body, so it runs after the reader is installed (Django's documented pattern)."""
    campaign = visible_campaign(request, pk)
    reader = UploadReader(request)
    request.upload_handlers = [reader]
    try:
        files = request.FILES.getlist(UPLOAD_FIELD)
    except (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as error:
        return request_error(request, error)
    # The drop zone sends a large upload in batches, each under the request limit; a file that is over it
    # on its own is not sent, only named, so its refusal is shown with the rest.
    limit = filesizeformat(settings.PIXELMILL_MAX_REQUEST_BYTES)
    oversized = [
        Refusal(shown_name(name), f"is larger than the {limit} one upload may carry; nothing of it was sent")
        for name in request.POST.getlist(OVERSIZED_FIELD)[: settings.DATA_UPLOAD_MAX_NUMBER_FILES]
    ]
    return receive_upload(request, campaign, files, [*reader.refused, *oversized])


@csrf_protect
def receive_upload(
    request: HttpRequest, campaign: Campaign, files: list[Any], refused: list[Refusal]
) -> HttpResponse:
    """Each file accepted, skipped as a duplicate or refused; the page shows the results until dismissed."""
    json_client = wants_json(request) or bool(request.headers.get("HX-Request"))
    if not files and not refused:
        if json_client:
            return JsonResponse({"error": NO_FILES}, status=400)
        messages.error(request, NO_FILES)
        return redirect(campaign)
    report = import_uploads(campaign, files, refused)
    remember_upload(request, campaign, report, batch_of=request.POST.get(BATCH_FIELD, "")[:64])
    if json_client:
        return JsonResponse(
            {**report.as_dict(), "message": " ".join(summarize_upload(report))},
            status=200 if report.accepted or report.checking or not report.refused else 422,
        )
    return redirect(campaign)


@require_POST
def campaign_upload_results_dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    """Hide the last upload's results from the campaign page."""
    campaign = visible_campaign(request, pk)
    stored = request.session.get(UPLOAD_RESULTS, {})
    if stored.pop(str(campaign.pk), None) is not None:
        request.session[UPLOAD_RESULTS] = stored
    return redirect(campaign)


def remember_upload(
    request: HttpRequest, campaign: Campaign, report: ImportReport, batch_of: str = ""
) -> None:
    """Keep the results on the session: they survive reloads until dismissed, and replace the last ones, except
    that the batches of one upload (`batch_of`, the drop zone's id for it) add up. Files handed to the workers
    are kept by id; their results are read from their rows when the page is shown."""
    stored = request.session.get(UPLOAD_RESULTS, {})
    earlier = stored.pop(str(campaign.pk), None)
    results = {**report.as_dict(limit=RESULT_ROWS), "at": timezone.now().isoformat(), "upload": batch_of}
    if batch_of and earlier is not None and earlier.get("upload") == batch_of:
        for kind in RESULT_KINDS:
            results[kind] = (earlier[kind] + results[kind])[:RESULT_ROWS]
            results["counts"][kind] += earlier["counts"][kind]
        results["checking"] = earlier["checking"] + results["checking"]
        results["counts"]["checking"] += earlier["counts"]["checking"]
    stored[str(campaign.pk)] = results
    request.session[UPLOAD_RESULTS] = dict(list(stored.items())[-UPLOAD_RESULT_CAMPAIGNS:])


def remembered_upload(request: HttpRequest, campaign: Campaign) -> dict[str, Any] | None:
    """The campaign's last upload results for the page, those of the files the workers brought in since
    added, with what is still being checked and how many rows of each kind were not kept."""
    stored = request.session.get(UPLOAD_RESULTS, {}).get(str(campaign.pk))
    if stored is None:
        return None
    results = {kind: list(stored[kind]) for kind in RESULT_KINDS}
    counts = {kind: stored["counts"][kind] for kind in RESULT_KINDS}
    checking = []
    ids = [row["id"] for row in stored.get("checking", [])]
    for upload in campaign.deferred_uploads.filter(pk__in=ids):
        if upload.state in (DeferredUpload.State.QUEUED, DeferredUpload.State.RUNNING):
            checking.append({"name": upload.name, "id": upload.pk, "kind": upload.kind})
        elif upload.state == DeferredUpload.State.SUCCEEDED:
            for kind in RESULT_KINDS:
                results[kind] += upload.results.get(kind, [])
                counts[kind] += upload.results.get("counts", {}).get(kind, 0)
        else:
            results["refused"].append({"name": upload.name, "reason": upload.error_message})
            counts["refused"] += 1
    hidden = {kind: counts[kind] - len(results[kind][:RESULT_ROWS]) for kind in RESULT_KINDS}
    return {
        **{kind: rows[:RESULT_ROWS] for kind, rows in results.items()},
        "checking": checking,
        "counts": {**counts, "checking": len(checking)},
        "hidden": hidden,
        "at": datetime.fromisoformat(stored["at"]),
    }


@require_GET
def campaign_upload_results(request: HttpRequest, pk: int) -> HttpResponse:
    """The last upload's results, asked for every few seconds while workers bring in some of its files; once
    none is left, the page reloads to show the new images in the gallery."""
    campaign = visible_campaign(request, pk)
    results = remembered_upload(request, campaign)
    response = render(
        request, "dashboard/_upload_results.html", {"campaign": campaign, "upload_results": results}
    )
    if not (results and results["checking"]):
        response["HX-Refresh"] = "true"
    return response


def summarize_upload(report: ImportReport) -> list[str]:
    """The upload's results in sentences, for a JSON client that shows a message."""
    lines = [f"Added {len(report.accepted)} image(s)."]
    if report.checking:
        names = ", ".join(upload.name for upload in report.checking[:REFUSALS_SHOWN])
        lines.append(f"Checking {names} in the background; the images appear on the page as they are added.")
    if report.duplicates:
        lines.append(
            f"{len(report.duplicates)} already in this campaign, skipped: "
            + "; ".join(str(d) for d in report.duplicates[:REFUSALS_SHOWN])
            + "."
        )
    lines += [f"Refused {r.name}: {r.reason.rstrip('.')}." for r in report.refused[:REFUSALS_SHOWN]]
    if len(report.refused) > REFUSALS_SHOWN:
        lines.append(f"…and {len(report.refused) - REFUSALS_SHOWN} more refused files.")
    return lines


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

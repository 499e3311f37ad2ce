"""Files out, only to the team that owns them: outputs, previews, thumbnails and a campaign's zip."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET
from zipstream import ZipStream

from dashboard.access import visible_campaign
from dashboard.exports import campaign_zip
from dashboard.models import Campaign, Output, SourceImage, Task
from dashboard.renditions import output_gallery_thumbnail, output_thumbnail, viewable_source
from dashboard.storage import download_url, open_stream
from dashboard.views.review import visible_output
from jobs.errors import PermanentError


def serve_file(name: str, *, download_name: str | None = None, redirect: bool = False) -> HttpResponseBase:
    """The stored file, streamed from storage a piece at a time. With `redirect` (a download, after the view's
    team check) and PIXELMILL_STORAGE_REDIRECT_DOWNLOADS, a redirect to a short-lived presigned link instead."""
    if not name:
        raise Http404("File not found")
    if redirect:
        content_type = mimetypes.guess_type(download_name or name)[0] or "application/octet-stream"
        url = download_url(name, filename=download_name, content_type=content_type)
        if url is not None:
            found = HttpResponseRedirect(url)
            found["Cache-Control"] = "no-store"  # the link expires; a cached redirect would outlive it
            return found
    try:
        stream = open_stream(name)
    except FileNotFoundError:
        raise Http404("File not found") from None
    response = FileResponse(stream, as_attachment=download_name is not None, filename=download_name or "")
    if not response.has_header("Content-Length"):  # a bucket's stream cannot seek: it knows its size
        response["Content-Length"] = str(stream.size)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def serve_rendition(make_key) -> HttpResponseBase:
    try:
        return serve_file(make_key())
    except (FileNotFoundError, PermanentError) as error:
        raise Http404("The image file is missing or unreadable") from error


@require_GET
def output_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    output = get_object_or_404(
        Output.objects.filter(task__campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "task__source"
        ),
        pk=pk,
    )
    stem = PurePosixPath(output.task.source.display_name).stem
    name = f"{stem}-{output.name}{PurePosixPath(output.file.name).suffix}"
    if request.GET.get("inline") == "1":  # shown in a page (compare, full size): same origin for the CSP
        return serve_file(output.file.name)
    return serve_file(output.file.name, download_name=name, redirect=True)


@require_GET
def task_preview(request: HttpRequest, pk: int) -> HttpResponseBase:
    task = get_object_or_404(
        Task.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(task.preview.name)


@require_GET
def source_thumbnail(request: HttpRequest, pk: int) -> HttpResponseBase:
    source = get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(source.thumbnail.name)


@require_GET
def source_original(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The source at full size, as a browser can show it (TIFF and HEIC through a WebP copy)."""
    source = get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_rendition(lambda: viewable_source(source))


@require_GET
def output_thumbnail_image(request: HttpRequest, pk: int) -> HttpResponseBase:
    return serve_rendition(lambda: output_thumbnail(visible_output(request, pk)))


@require_GET
def output_gallery_thumbnail_image(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The small picture of an output on the campaign page's gallery, made on first request and kept."""
    return serve_rendition(lambda: output_gallery_thumbnail(visible_output(request, pk)))


@require_GET
def campaign_download(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every output, or with ?approved=1 only the approved ones (what a share link hands out)."""
    campaign = visible_campaign(request, pk)
    approved_only = request.GET.get("approved") == "1"
    suffix = "-approved" if approved_only else ""
    return zip_response(campaign_zip(campaign, approved_only=approved_only), campaign.archive_name(suffix))


def zip_response(archive: ZipStream, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(archive, content_type="application/zip")
    response["Content-Length"] = str(len(archive))
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response

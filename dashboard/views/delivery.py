"""Files out, only to the team that owns them: outputs, previews, thumbnails and a campaign's zip."""

from __future__ import annotations

from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET
from zipstream import ZipStream

from dashboard.access import visible_campaign
from dashboard.exports import campaign_zip
from dashboard.models import Campaign, Output, SourceImage, Task
from dashboard.renditions import output_gallery_thumbnail, output_thumbnail, viewable_source
from dashboard.views.review import visible_output
from jobs.errors import PermanentError


def serve_file(name: str, *, download_name: str | None = None) -> FileResponse:
    if not name or not default_storage.exists(name):
        raise Http404("File not found")
    response = FileResponse(
        default_storage.open(name, "rb"),
        as_attachment=download_name is not None,
        filename=download_name or "",
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


def serve_rendition(make_key) -> FileResponse:
    try:
        return serve_file(make_key())
    except (FileNotFoundError, PermanentError) as error:
        raise Http404("The image file is missing or unreadable") from error


@require_GET
def output_download(request: HttpRequest, pk: int) -> FileResponse:
    output = get_object_or_404(
        Output.objects.filter(task__campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "task__source"
        ),
        pk=pk,
    )
    stem = PurePosixPath(output.task.source.display_name).stem
    name = f"{stem}-{output.name}{PurePosixPath(output.file.name).suffix}"
    return serve_file(output.file.name, download_name=name if request.GET.get("inline") != "1" else None)


@require_GET
def task_preview(request: HttpRequest, pk: int) -> FileResponse:
    task = get_object_or_404(
        Task.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(task.preview.name)


@require_GET
def source_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    source = get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_file(source.thumbnail.name)


@require_GET
def source_original(request: HttpRequest, pk: int) -> FileResponse:
    """The source at full size, as a browser can show it (TIFF and HEIC through a WebP copy)."""
    source = get_object_or_404(
        SourceImage.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)), pk=pk
    )
    return serve_rendition(lambda: viewable_source(source))


@require_GET
def output_thumbnail_image(request: HttpRequest, pk: int) -> FileResponse:
    return serve_rendition(lambda: output_thumbnail(visible_output(request, pk)))


@require_GET
def output_gallery_thumbnail_image(request: HttpRequest, pk: int) -> FileResponse:
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

"""Request guards that must act before anything reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat


class RequestSizeLimitMiddleware:
    """Answer 413 to a request whose declared body is over PIXELMILL_MAX_REQUEST_BYTES, before the CSRF
    check or the upload handlers read (and spool to disk) any of it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = settings.PIXELMILL_MAX_REQUEST_BYTES
        if declared > limit:
            message = (
                f"That upload is {filesizeformat(declared)}; one upload may carry at most "
                f"{filesizeformat(limit)}. Send it in batches, or as several .zip archives."
            )
            if request.headers.get("Accept") == "application/json":
                return JsonResponse({"error": message}, status=413)
            return render(
                request, "dashboard/error.html", {"title": "Upload too large", "message": message}, status=413
            )
        return self.get_response(request)

"""The error pages Django hands requests to: a bad request, or an upload too large for one request."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Too many files or too much form data is a 413 with a way out, not a bare 400."""
    if isinstance(exception, (TooManyFilesSent, TooManyFieldsSent, RequestDataTooBig)):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        message = f"That upload is too large for one request (at most {limit} files). Send it in batches or as .zip archives."
        if request.headers.get("Accept") == "application/json":
            return JsonResponse({"error": message}, status=413)
        return render(
            request, "dashboard/error.html", {"title": "Upload too large", "message": message}, status=413
        )
    return render(
        request,
        "dashboard/error.html",
        {"title": "Bad request", "message": "The request could not be understood."},
        status=400,
    )

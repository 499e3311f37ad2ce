"""The error pages Django hands requests to (a bad request, an upload too large, a stale CSRF token), answered
as JSON to a client that asked for JSON, such as the page's upload script."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.views import csrf


def wants_json(request: HttpRequest) -> bool:
    """The upload script and API clients ask for JSON; a browser opening a page never does."""
    return "application/json" in request.headers.get("Accept", "")


def error_response(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    """`{"error": message}` to a JSON client, the error page to a person."""
    if wants_json(request):
        return JsonResponse({"error": message}, status=status)
    return render(request, "dashboard/error.html", {"title": title, "message": message}, status=status)


def request_error(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The answer to a request body that could not be read, with a way out where there is one."""
    if isinstance(exception, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        message = f"That upload is too large for one request (at most {limit} files). Send it in batches or as .zip archives."
        return error_response(request, 413, "Upload too large", message)
    if isinstance(exception, RequestDataTooBig):
        size = filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        message = f"That form sent more than {size} of text besides its files; nothing was saved."
        return error_response(request, 413, "Form too large", message)
    if isinstance(exception, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        message = f"That form sent more than {limit} fields; nothing was saved."
        return error_response(request, 400, "Form too large", message)
    if isinstance(exception, MultiPartParserError):
        message = (
            f"The upload could not be read ({exception}), so nothing was saved. Try again; if it keeps "
            "failing, upload fewer files at a time."
        )
        return error_response(request, 400, "Upload could not be read", message)
    return error_response(request, 400, "Bad request", "The request could not be understood.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Too many files or too much form data is a 413 with a way out, not a bare 400."""
    if exception is None:
        return error_response(request, 400, "Bad request", "The request could not be understood.")
    return request_error(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form sent from a page open too long, or from before a new login: the upload script says what to do."""
    if wants_json(request):
        message = "This page is out of date (its security token expired): reload the page, then try again."
        return JsonResponse({"error": message}, status=403)
    return csrf.csrf_failure(request, reason)

"""Guards around every request: a body too large before anything reads it, private headers under /share/."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat

from dashboard.views.errors import error_response


class RequestSizeLimitMiddleware:
    """Answer 413 to a request whose declared body is over PIXELMILL_MAX_REQUEST_BYTES, before the CSRF
    check or the upload handlers read (and spool to disk) any of it; and 411 to a body sent in chunks
    without a length, which Django reads as empty."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared_length = request.META.get("CONTENT_LENGTH")
        try:
            declared = int(declared_length or 0)
        except ValueError:
            declared = 0
        if not declared_length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            message = (
                "That request was sent in chunks without a Content-Length, and its body cannot be read that "
                "way, so nothing was saved. Send it with a Content-Length (browsers always do)."
            )
            return error_response(request, 411, "Length required", message)
        limit = settings.PIXELMILL_MAX_REQUEST_BYTES
        if declared > limit:
            message = (
                f"That upload is {filesizeformat(declared)}; one upload may carry at most "
                f"{filesizeformat(limit)}. Send it in batches, or as several .zip archives."
            )
            return error_response(request, 413, "Upload too large", message)
        return self.get_response(request)


# The token is the key: keep it out of Referer headers, search engines and shared caches.
SHARE_PREFIX = "/share/"
SHARE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "private, no-store",
}


class SharePrivacyMiddleware:
    """Every answer under /share/ carries SHARE_HEADERS: the page and the ZIP, and just as much a 404 under a
    working token, a 410, a refused POST or an error page, whose address holds the token too. Outermost, so
    that it sees the answers of the other middleware and the error pages exceptions become."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(SHARE_PREFIX):
            for header, value in SHARE_HEADERS.items():
                response[header] = value
        return response

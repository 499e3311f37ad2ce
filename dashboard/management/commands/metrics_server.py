"""Serve this machine's worker figures on /metrics, for a machine that runs workers but no web process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import CONTENT_TYPE_LATEST

from dashboard.prometheus import scrape, token_matches

StartResponse = Callable[[str, list[tuple[str, str]]], object]


def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The web's /metrics rules: 404 off the path, 401 without the token; only the multiprocess folder's
    figures (the web's /metrics already reports what the database and Redis hold)."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    if not token_matches(environ.get("HTTP_AUTHORIZATION", "")):
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [b"a bearer token is needed\n"]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-store")])
    return [scrape(with_cluster=False)]


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="an internal address only")
        parser.add_argument("--port", type=int, default=9108)

    def handle(self, *args: Any, bind: str, port: int, **options: Any) -> None:
        if not settings.PIXELMILL_METRICS_TOKEN:
            raise CommandError("Set PIXELMILL_METRICS_TOKEN: worker figures are never served without it.")
        server: WSGIServer = make_server(bind, port, metrics_app)
        self.stdout.write(f"Worker metrics on http://{bind}:{port}/metrics")
        server.serve_forever()

"""/healthz: the process answers (liveness); /readyz: the database, Redis and storage each answer, or the reply names the one that did not."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import django_rq
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    """PING on each queue's connection, the ones django-rq enqueues on."""
    for name in settings.RQ_QUEUES:
        redis = django_rq.get_connection(name)
        # django-rq builds a new pool for each get_connection, so these timeouts bound only this check.
        timeout = settings.PIXELMILL_HEALTH_REDIS_TIMEOUT_SECONDS
        redis.connection_pool.connection_kwargs.setdefault("socket_connect_timeout", timeout)
        redis.connection_pool.connection_kwargs.setdefault("socket_timeout", timeout)
        try:
            redis.ping()
        finally:
            redis.close()


def check_storage() -> None:
    """Write a small file where sources and outputs go, read it back, delete it: what uploads and workers do."""
    content = b"pixelmill readyz"
    name = default_storage.save(f"readyz/{uuid.uuid4().hex}", ContentFile(content))
    try:
        with default_storage.open(name, "rb") as stored:
            if stored.read() != content:
                raise OSError(f"{name} read back different bytes")
    finally:
        default_storage.delete(name)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "storage": check_storage,
}


def plain(text: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(text, content_type="text/plain", status=status)
    response["Cache-Control"] = "no-store"
    return response


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: this process serves requests. It touches no dependency, so a Redis or database outage
    never makes an orchestrator restart every web process at once (that is what /readyz is for)."""
    return plain("ok\n")


@login_not_required
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when every check passes, else 503; one line per check either way. The reasons go to
    the log, not to whoever asks: this page needs no account."""
    failed = []
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure is an answer here, not a 500
            logger.warning("readiness check failed", extra={"check": name, "error": repr(error)})
            failed.append(name)
    lines = [f"{name}: {'failed' if name in failed else 'ok'}" for name in CHECKS]
    return plain("\n".join(lines) + "\n", status=503 if failed else 200)

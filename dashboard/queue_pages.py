"""django-rq's pages as we serve them: behind a permission, with the inline scripts and styles of its own
templates let through the Content-Security-Policy by their hashes, and nothing else inline."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

import django_rq
from csp.decorators import csp_update
from django.contrib.auth.decorators import permission_required

TEMPLATES = Path(django_rq.__file__).parent / "templates"


@functools.cache
def inline_hashes(tag: str) -> list[str]:
    """The CSP hash source of every inline <tag> block in django-rq's templates (the job lists start the admin's
    action checkboxes with a script; a few pages carry a <style>). Read from the installed templates, so an
    upgrade brings its own; a block with template tags in it would hash differently and is left out."""
    hashes = set()
    for template in sorted(TEMPLATES.rglob("*.html")):
        for body in re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", template.read_text(), re.S):
            if body.strip() and "{%" not in body and "{{" not in body:
                digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                hashes.add(f"'sha256-{digest}'")
    return sorted(hashes)


def queue_view(view):
    """django-rq checks only is_staff; queue internals (job arguments, tracebacks) need a permission."""
    allowed = permission_required("dashboard.view_queues", raise_exception=True)(view)
    return csp_update({"script-src": inline_hashes("script"), "style-src-elem": inline_hashes("style")})(
        allowed
    )

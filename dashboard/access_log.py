"""Gunicorn's access log without the secrets some URLs carry (share links, fal's webhook path)."""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

# The path segment after these prefixes is a bearer secret: whoever reads it can use it.
SECRET_PATH = re.compile(r"(/share/|/webhooks/fal/)[^/?\s]+")


def redact(text: str) -> str:
    return SECRET_PATH.sub(r"\1[redacted]", text)


class RedactingLogger(Logger):
    """`gunicorn --logger-class dashboard.access_log.RedactingLogger`: paths keep their shape, not their keys."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{referer}i"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms

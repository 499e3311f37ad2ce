"""Secrets that URLs and messages carry (share tokens, webhook secrets), kept out of every log record."""

from __future__ import annotations

import logging
import re
from typing import Any

# The path segment after these is a bearer secret: whoever reads it can use it. With or without the leading
# slash (Django's Resolver404 names paths without it); "share-links/4/" is not one.
SECRET_PATH = re.compile(r"(?<![\w-])(share|webhooks/fal)/[^/?#\s'\"<>]+")
# A campaign's webhook signing secret (dashboard.models.campaigns.WEBHOOK_SECRET_PREFIX).
SIGNING_SECRET = re.compile(r"whsec_[A-Za-z0-9]+")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    return SIGNING_SECRET.sub("whsec_[redacted]", SECRET_PATH.sub(r"\1/[redacted]", text))


def redact_value(value: Any) -> Any:
    """`value` with secrets redacted: strings and the strings inside lists and dicts; any other object that
    would be written as its str() (a request: "<WSGIRequest: GET '/share/…'>") becomes that str, redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    text = str(value)
    redacted = redact(text)
    return value if redacted == text else redacted


class RedactSecrets(logging.Filter):
    """On a handler, redacts each record it writes, whichever logger it came from: the message with its
    arguments, the extra fields (path, request, url…) and the traceback. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for name, value in list(record.__dict__.items()):
            if name not in STANDARD_ATTRIBUTES:
                record.__dict__[name] = redact_value(value)
        if record.exc_info:
            # Formatted here once, so the formatter writes this redacted text rather than formatting it again.
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True

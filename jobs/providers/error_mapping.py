"""How an AI provider's HTTP answer becomes one of our errors, and whether and when to try again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from jobs.errors import CreditsExhaustedError, PermanentError, RateLimitedError, StepError, TransientError

if TYPE_CHECKING:
    import httpx

DEFAULT_RETRY_AFTER = 1.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def provider_reason(response: httpx.Response) -> str:
    """The provider's own words: remove.bg's errors[].title, or detail / message / error, else the status."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            title = errors[0].get("title") or errors[0].get("detail")
            if title:
                return str(title)
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        # fal (and any FastAPI service) lists validation errors: [{"loc": ["body", "seed"], "msg": …}].
        details = body.get("detail")
        if isinstance(details, list) and details and all(isinstance(item, dict) for item in details):
            return "; ".join(validation_message(item) for item in details[:5])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def validation_message(item: dict[str, Any]) -> str:
    location = item.get("loc")
    message = str(item.get("msg") or item.get("type") or "invalid")
    return f"{location[-1]}: {message}" if isinstance(location, list) and location else message


def raise_for_provider_status(response: httpx.Response, provider: str) -> None:
    """Nothing for a success; otherwise the error that says whether and when to try again."""
    if response.status_code < 400:
        return
    error = error_for_status(response, provider)
    error.provider = provider
    error.http_status = response.status_code
    raise error


def error_for_status(response: httpx.Response, provider: str) -> StepError:
    status = response.status_code
    reason = provider_reason(response)
    if status == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError(
            f"{provider} is rate limiting us: {reason}",
            retry_after=DEFAULT_RETRY_AFTER if wait is None else wait,
            code="rate_limited",
        )
    if status == 402:
        return CreditsExhaustedError(f"{provider} says the account is out of credits: {reason}")
    if status >= 500 or status == 408:
        return TransientError(f"{provider} had a problem ({status}): {reason}", code=f"http_{status}")
    return PermanentError(f"{provider} refused the image: {reason}", code="provider_rejected")


def transient_for_exception(error: httpx.HTTPError, provider: str) -> TransientError:
    """Timeouts and broken connections are worth another try."""
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return TransientError(f"{provider} did not answer in time.", code="timeout")
    return TransientError(
        f"The connection to {provider} failed ({type(error).__name__}).", code="connection_failed"
    )

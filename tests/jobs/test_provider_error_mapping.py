"""Provider answers map to permanent, transient or rate-limited errors, keeping the provider's own reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from jobs.errors import CreditsExhaustedError, PermanentError, RateLimitedError, TransientError
from jobs.providers.error_mapping import parse_retry_after, raise_for_provider_status, transient_for_exception


def answer(status: int, *, json=None, headers=None) -> httpx.Response:
    """A real response from httpx's MockTransport, as the client would see it."""
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=json, headers=headers))
    with httpx.Client(transport=transport) as client:
        return client.post("https://api.example/v1.0/removebg")


def test_retry_after_in_seconds_and_as_an_http_date():
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None and parse_retry_after(None) is None


def test_429_is_rate_limited_for_at_least_retry_after():
    with pytest.raises(RateLimitedError) as error:
        raise_for_provider_status(answer(429, headers={"Retry-After": "12"}), "remove.bg")
    assert error.value.retry_after == 12.0


def test_402_means_credits_are_exhausted_which_pauses_rather_than_fails():
    body = {"errors": [{"title": "Insufficient credits", "code": "insufficient_credits"}]}
    with pytest.raises(CreditsExhaustedError) as error:
        raise_for_provider_status(answer(402, json=body), "remove.bg")
    assert error.value.code == "credits_exhausted" and "Insufficient credits" in error.value.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(status):
    with pytest.raises(TransientError) as error:
        raise_for_provider_status(answer(status), "Photoroom")
    assert not isinstance(error.value, RateLimitedError) and error.value.code == f"http_{status}"


def test_other_4xx_are_permanent_with_the_providers_reason():
    body = {"errors": [{"title": "Could not identify foreground in image.", "code": "unknown_foreground"}]}
    with pytest.raises(PermanentError, match="Could not identify foreground"):
        raise_for_provider_status(answer(400, json=body), "remove.bg")
    with pytest.raises(PermanentError, match="Image too small"):
        raise_for_provider_status(answer(422, json={"detail": "Image too small"}), "Photoroom")


@pytest.mark.parametrize("status", [200, 201, 202])
def test_success_raises_nothing(status):
    """Any 2xx passes: 202 is how fal says a queued request is still under way."""
    assert raise_for_provider_status(answer(status, json={"status": "success"}), "PixelPanda") is None


def test_timeouts_and_resets_are_transient():
    request = httpx.Request("POST", "https://api.example/")
    assert transient_for_exception(httpx.ReadTimeout("slow", request=request), "fal").code == "timeout"
    reset = transient_for_exception(httpx.RemoteProtocolError("reset", request=request), "fal")
    assert reset.code == "connection_failed"

"""fal's queue API (submit → status → result, cancel) and its signed webhooks, over the shared client.

The wire format is fal's public one (docs.fal.ai, "Queue" and "Webhooks"): `POST {base}/{model}` with
`Authorization: Key <key>` answers a request id and the URLs to poll, fetch and cancel it; fal signs
each webhook with ED25519 over the request id, user id, timestamp and the body's SHA-256, with keys
published as a JWKS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from redis import Redis

from jobs.errors import PermanentError
from jobs.providers.client import ProviderClient

if TYPE_CHECKING:
    import httpx

DEFAULT_MODEL = "fal-ai/flux/schnell"
DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
IMAGE_SIZE_PRESETS = (
    "square_hd",
    "square",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
)
MIN_SIDE, MAX_SIDE = 64, 4096
WEBHOOK_TOLERANCE_SECONDS = 300
JWKS_CACHE_SECONDS = 24 * 3600
# A signature that fails against cached keys refetches them (fal rotated its keys), at most this often.
JWKS_REFRESH_SECONDS = 300
SIZE_PATTERN = re.compile(r"^\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*$", re.IGNORECASE)


class ImageSizeError(ValueError):
    """An image size that is neither a fal preset nor WIDTHxHEIGHT within bounds."""


def fal_image_size(value: str) -> str | dict[str, int]:
    """Our image size as fal takes it: a preset name as is, "1024x768" as {"width": 1024, "height": 768}."""
    value = (value or "").strip()
    if value in IMAGE_SIZE_PRESETS:
        return value
    match = SIZE_PATTERN.match(value)
    if not match:
        raise ImageSizeError(
            f"image size {value!r} is unknown; use {', '.join(IMAGE_SIZE_PRESETS)} or WIDTHxHEIGHT such as 1024x768"
        )
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ImageSizeError(
            f"image size {value} is out of range; each side must be {MIN_SIDE} to {MAX_SIDE}"
        )
    return {"width": width, "height": height}


@dataclass(frozen=True)
class FalRequest:
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class FalQueue:
    """One model's queue at one fal provider; every call goes through the provider's `ProviderClient`."""

    def __init__(self, client: ProviderClient, model: str = DEFAULT_MODEL) -> None:
        self.client = client
        self.model = model.strip("/")

    def submit(self, arguments: dict[str, Any], webhook_url: str | None = None) -> FalRequest:
        """Queue one request (this is the call fal charges for); fal POSTs to `webhook_url` when it is done."""
        try:
            response = self.client.send(
                "POST",
                f"/{self.model}",
                endpoint="fal_submit",
                json=arguments,
                params={"fal_webhook": webhook_url} if webhook_url else None,
                headers=self._headers(),
            )
        except PermanentError as error:
            # The client words a refusal for recipe steps ("refused the image"); here a prompt was refused.
            error.message = error.message.replace("refused the image", "refused the prompt", 1)
            error.args = (error.message,)
            raise
        body = self._json(response)
        request_id = str(body.get("request_id") or "")
        if not request_id:
            raise PermanentError(f"{self.client.name} did not return a request id.", code="bad_answer")
        # fal answers the URLs; older answers lacked them, and they follow the app id (owner/app).
        app = "/".join(self.model.split("/")[:2])
        base = f"{self.client.config.base_url.rstrip('/')}/{app}/requests/{request_id}"
        return FalRequest(
            request_id=request_id,
            status_url=str(body.get("status_url") or f"{base}/status"),
            response_url=str(body.get("response_url") or base),
            cancel_url=str(body.get("cancel_url") or f"{base}/cancel"),
        )

    def status(self, request: FalRequest) -> str:
        """IN_QUEUE, IN_PROGRESS or COMPLETED; polls cost nothing, so they skip the shared rate limit."""
        response = self.client.send(
            "GET", request.status_url, endpoint="fal_status", limited=False, headers=self._headers()
        )
        return str(self._json(response).get("status") or "").upper()

    def result(self, request: FalRequest) -> dict[str, Any]:
        """The finished request's output, e.g. {"images": [{"url", "width", "height", "content_type"}], "seed"}.

        A request that failed at fal answers an error status here, which the client maps (a 4xx fails
        with fal's reason).
        """
        response = self.client.send(
            "GET", request.response_url, endpoint="fal_result", limited=False, headers=self._headers()
        )
        return self._json(response)

    def cancel(self, request: FalRequest) -> bool:
        """Ask fal to drop a request; False when it was already finished (fal answers 400 then)."""
        try:
            self.client.send(
                "PUT", request.cancel_url, endpoint="fal_cancel", limited=False, headers=self._headers()
            )
        except PermanentError:
            return False
        return True

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.client.config.api_key()}"}

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise PermanentError(
                f"{self.client.name} answered with something other than JSON.", code="bad_answer"
            )
        return body


class WebhookRejectedError(Exception):
    """A webhook we will not act on; `status` is the HTTP answer (400 malformed or stale, 401 forged)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class FalWebhook:
    """The signed headers of one fal webhook delivery."""

    request_id: str
    user_id: str
    timestamp: str
    signature: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> FalWebhook:
        values = {}
        for field in ("request-id", "user-id", "timestamp", "signature"):
            value = headers.get(f"X-Fal-Webhook-{field.title()}") or headers.get(f"x-fal-webhook-{field}")
            if not value:
                raise WebhookRejectedError(f"missing header X-Fal-Webhook-{field.title()}", status=400)
            values[field.replace("-", "_")] = value.strip()
        return cls(**values)

    def check_timestamp(self, now: float | None = None) -> None:
        """Refuse a delivery more than five minutes old or ahead: a replayed capture stays useless."""
        try:
            sent = int(self.timestamp)
        except ValueError:
            raise WebhookRejectedError("X-Fal-Webhook-Timestamp is not a Unix time", status=400) from None
        if abs((time.time() if now is None else now) - sent) > WEBHOOK_TOLERANCE_SECONDS:
            raise WebhookRejectedError("the webhook's timestamp is more than 5 minutes off", status=400)

    def message(self, body: bytes) -> bytes:
        parts = [self.request_id, self.user_id, self.timestamp, hashlib.sha256(body).hexdigest()]
        return "\n".join(parts).encode()

    def is_signed_by(self, body: bytes, public_keys: list[bytes]) -> bool:
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            return False
        # Imported here: cryptography's bindings are 6 MB resident that only a fal webhook needs.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        message = self.message(body)
        for raw in public_keys:
            try:
                Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
            except (InvalidSignature, ValueError):
                continue
            return True
        return False


def parse_jwks(body: Any) -> list[bytes]:
    """The raw ED25519 public keys of a JWKS (`kty` OKP, `crv` Ed25519, `x` base64url)."""
    keys = []
    for key in body.get("keys", []) if isinstance(body, dict) else []:
        if not isinstance(key, dict) or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        x = str(key.get("x") or "")
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            keys.append(raw)
    return keys


class FalKeyring:
    """fal's webhook public keys, fetched through the provider's client and kept in Redis for a day."""

    def __init__(self, client: ProviderClient, jwks_url: str, connection: Redis) -> None:
        self.client = client
        self.jwks_url = jwks_url
        self.connection = connection
        self.cache_key = f"pixelmill:fal:jwks:{hashlib.sha256(jwks_url.encode()).hexdigest()[:32]}"

    def verify(self, webhook: FalWebhook, body: bytes) -> None:
        """Raise WebhookRejectedError (401) unless one of fal's keys signed this delivery."""
        keys, fetched_at = self._cached()
        if keys and webhook.is_signed_by(body, keys):
            return
        if keys and time.time() - fetched_at < JWKS_REFRESH_SECONDS:
            raise WebhookRejectedError("the webhook signature is not valid", status=401)
        if not webhook.is_signed_by(body, self._fetch()):
            raise WebhookRejectedError("the webhook signature is not valid", status=401)

    def _cached(self) -> tuple[list[bytes], float]:
        # redis-py types its sync client's replies as "Awaitable | Any" (shared with the asyncio client).
        raw = cast(bytes | None, self.connection.get(self.cache_key))
        if not raw:
            return [], 0.0
        entry = json.loads(raw)
        return [base64.b64decode(key) for key in entry["keys"]], float(entry["fetched_at"])

    def _fetch(self) -> list[bytes]:
        response = self.client.send("GET", self.jwks_url, endpoint="fal_jwks", limited=False)
        try:
            keys = parse_jwks(response.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            keys = []
        if keys:
            entry = {"fetched_at": time.time(), "keys": [base64.b64encode(key).decode() for key in keys]}
            self.connection.set(self.cache_key, json.dumps(entry), ex=JWKS_CACHE_SECONDS)
        return keys

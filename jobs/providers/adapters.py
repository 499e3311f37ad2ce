"""Adapters: each speaks one provider's public wire format, through the shared `ProviderClient`.

An adapter turns (operation, image bytes) into result bytes plus what the provider said about them
(request id, credits charged, uncertainty score, …), which the step cache keeps with the result.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from jobs.errors import PermanentError
from jobs.operations import Operation
from jobs.providers import REMBG_MODELS
from jobs.providers.client import ProviderClient

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class RemoteResult:
    data: bytes
    request_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # Answered from the provider's record of an earlier try with the same Idempotency-Key (the header
    # Idempotent-Replayed): that try was billed, this answer is not.
    replayed: bool = False


class Adapter(ABC):
    kind: ClassVar[str]

    def __init__(self, client: ProviderClient) -> None:
        self.client = client
        self.config = client.config

    @abstractmethod
    def run(
        self, operation: Operation, image: bytes, content_type: str, *, idempotency_key: str | None = None
    ) -> RemoteResult:
        """Send `image` for `operation`; raises our StepErrors (the client maps HTTP answers)."""

    def run_chain(
        self,
        operations: Sequence[Operation],
        image: bytes,
        content_type: str,
        *,
        idempotency_key: str | None = None,
    ) -> RemoteResult:
        """Several operations in one call; only providers with a batch endpoint are ever given more than one."""
        if len(operations) != 1:
            raise PermanentError(
                f"{self.client.name} cannot run several steps in one call.", code="bad_config"
            )
        return self.run(operations[0], image, content_type, idempotency_key=idempotency_key)

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

    def _image(self, response: httpx.Response) -> bytes:
        if not response.headers.get("content-type", "").startswith("image/"):
            raise PermanentError(
                f"{self.client.name} answered {response.headers.get('content-type') or 'nothing'}, not an image.",
                code="bad_answer",
            )
        return response.content


class PixelPandaAdapter(Adapter):
    """`POST {base}/remove-background|/enhance|/upscale` with a Bearer token and `image_base64`; a chain of
    steps goes to `/batch` as `operations`, one call for all of them."""

    kind = "pixelpanda"
    # The names `/batch` takes in `operations` are its endpoints' names.
    BATCH_NAMES: ClassVar[dict[str, str]] = {
        "remove_background": "remove-background",
        "enhance": "enhance",
        "upscale": "upscale",
    }

    def run(
        self, operation: Operation, image: bytes, content_type: str, *, idempotency_key: str | None = None
    ) -> RemoteResult:
        payload: dict[str, Any] = {"image_base64": base64.b64encode(image).decode("ascii")}
        if operation.name == "upscale":
            payload["scale_factor"] = operation.params()["factor"]
        return self._process(self.config.path(operation.name), operation.name, payload, idempotency_key)

    def run_chain(
        self,
        operations: Sequence[Operation],
        image: bytes,
        content_type: str,
        *,
        idempotency_key: str | None = None,
    ) -> RemoteResult:
        if len(operations) == 1:
            return self.run(operations[0], image, content_type, idempotency_key=idempotency_key)
        chain: list[dict[str, Any]] = []
        for operation in operations:
            entry: dict[str, Any] = {"operation": self.BATCH_NAMES[operation.name]}
            if operation.name == "upscale":
                entry["scale_factor"] = operation.params()["factor"]
            chain.append(entry)
        payload = {"image_base64": base64.b64encode(image).decode("ascii"), "operations": chain}
        return self._process(self.config.path("batch"), "batch", payload, idempotency_key)

    def _process(
        self, path: str, endpoint: str, payload: dict[str, Any], idempotency_key: str | None
    ) -> RemoteResult:
        response = self.client.send(
            "POST",
            path,
            endpoint=endpoint,
            idempotency_key=idempotency_key,
            json=payload,
            headers={"Authorization": f"Bearer {self.config.api_key()}"},
        )
        body = self._json(response)
        if body.get("status") not in (None, "success", "completed") or not body.get("processed_url"):
            reason = body.get("error") or body.get("detail") or body.get("message") or "no processed_url"
            raise PermanentError(
                f"{self.client.name} could not process the image: {reason}", code="provider_rejected"
            )
        result = self.client.download(str(body["processed_url"]))
        return RemoteResult(
            data=self._image(result),
            request_id=str(body.get("request_id") or response.headers.get("x-request-id") or ""),
            meta={"execution_time_ms": body.get("execution_time_ms")},
            replayed=replayed(response),
        )


class RemoveBgAdapter(Adapter):
    """remove.bg: `POST /v1.0/removebg`, `X-Api-Key`, multipart `image_file`; the answer is the image."""

    kind = "removebg"

    def run(
        self, operation: Operation, image: bytes, content_type: str, *, idempotency_key: str | None = None
    ) -> RemoteResult:
        response = self.client.send(
            "POST",
            "/v1.0/removebg",
            endpoint=operation.name,
            idempotency_key=idempotency_key,
            files={"image_file": ("image" + _extension(content_type), image, content_type)},
            data={
                "size": str(self.config.options.get("size", "auto")),
                "type": str(self.config.options.get("type", "auto")),
                "format": "png",
                "crop": "false",
            },
            headers={"X-Api-Key": self.config.api_key(), "Accept": "image/*"},
        )
        meta = {
            "credits_charged": _number(response.headers.get("x-credits-charged")),
            "detected_type": response.headers.get("x-type"),
            "rate_limit_remaining": _number(response.headers.get("x-ratelimit-remaining")),
        }
        return RemoteResult(
            data=self._image(response),
            request_id=response.headers.get("x-request-id", ""),
            meta=meta,
            replayed=replayed(response),
        )


class PhotoroomAdapter(Adapter):
    """Photoroom: `POST /v1/segment`, `x-api-key`, multipart `image_file`; keeps `x-uncertainty-score`."""

    kind = "photoroom"

    def run(
        self, operation: Operation, image: bytes, content_type: str, *, idempotency_key: str | None = None
    ) -> RemoteResult:
        response = self.client.send(
            "POST",
            "/v1/segment",
            endpoint=operation.name,
            idempotency_key=idempotency_key,
            files={"image_file": ("image" + _extension(content_type), image, content_type)},
            data={"format": "png", "size": str(self.config.options.get("size", "full")), "crop": "false"},
            headers={"x-api-key": self.config.api_key()},
        )
        meta = {"uncertainty_score": _number(response.headers.get("x-uncertainty-score"))}
        return RemoteResult(
            data=self._image(response),
            request_id=response.headers.get("x-request-id", ""),
            meta=meta,
            replayed=replayed(response),
        )


class RembgAdapter(Adapter):
    """A self-hosted rembg server: `POST /api/remove`, multipart `file`, form `model` and `a`."""

    kind = "rembg"

    def run(
        self, operation: Operation, image: bytes, content_type: str, *, idempotency_key: str | None = None
    ) -> RemoteResult:
        model = str(self.config.options.get("model", "u2net"))
        if model not in REMBG_MODELS:
            raise PermanentError(f"rembg has no model {model!r}.", code="bad_config")
        key = self.config.api_key()
        response = self.client.send(
            "POST",
            "/api/remove",
            endpoint=operation.name,
            idempotency_key=idempotency_key,
            files={"file": ("image" + _extension(content_type), image, content_type)},
            data={"model": model, "a": "true" if self.config.options.get("alpha_matting") else "false"},
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        return RemoteResult(data=self._image(response), meta={"model": model}, replayed=replayed(response))


def replayed(response: httpx.Response) -> bool:
    """Whether the provider answered from its record of an earlier try with the same Idempotency-Key."""
    return str(response.headers.get("Idempotent-Replayed", "")).lower() == "true"


ADAPTERS: dict[str, type[Adapter]] = {
    adapter.kind: adapter for adapter in (PixelPandaAdapter, RemoveBgAdapter, PhotoroomAdapter, RembgAdapter)
}


def adapter_for(client: ProviderClient) -> Adapter:
    adapter = ADAPTERS.get(client.config.kind)
    if adapter is None:
        raise PermanentError(f"{client.name} cannot run recipe steps.", code="bad_config")
    return adapter(client)


def _extension(content_type: str) -> str:
    return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(content_type, "")


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

"""PixelPanda's wire format: JSON in, a processed_url out; remove-background, enhance, upscale, batch."""

from __future__ import annotations

import functools
import time
import uuid
from email.message import Message
from typing import Any, ClassVar

from jobs.imaging import decode_image
from jobs.operations import OperationContext, build_operation
from simulator.calls import Answer, Call, Refusal, json_answer
from simulator.config import SimulatorConfig
from simulator.formats.base import Format, Route, authorization
from simulator.formats.image_work import cut_out, encode


class PixelPanda(Format):
    name = "pixelpanda"
    operations: ClassVar[dict[str, str]] = {
        "remove-background": "remove_background",
        "remove_background": "remove_background",
        "enhance": "enhance",
        "upscale": "upscale",
    }

    def route(self, method: str, segments: list[str]) -> Route | None:
        # Our client appends "/remove-background" to the base URL; the SDK uses "/api/v1/..." or "/api/v2/...".
        if method != "POST" or not segments or segments[:-1] not in ([], ["api", "v1"], ["api", "v2"]):
            return None
        endpoint = segments[-1]
        if endpoint not in ("remove-background", "enhance", "upscale", "batch"):
            return None
        return Route(endpoint, True, functools.partial(self.process, endpoint=endpoint))

    def presented_key(self, headers: Message) -> str | None:
        return authorization(headers, "Bearer")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"status": "error", "error": message, "detail": message, "code": code}

    def process(self, call: Call, settings: SimulatorConfig, *, endpoint: str) -> Answer:
        payload = call.json_object()
        data = self.image_input(
            call, data=None, b64=payload.get("image_base64"), url=payload.get("image_url")
        )
        if endpoint == "batch":
            steps = self._batch_steps(payload.get("operations"))
        elif endpoint == "upscale":
            steps = [("upscale", {"factor": scale_factor(payload.get("scale_factor", 2))})]
        else:
            steps = [(self.operations[endpoint], {})]
        began = time.perf_counter()
        image = decode_image(data)
        for name, params in steps:
            if name == "remove_background" and settings.cheap_cutouts:
                image = cut_out(image, cheap=True)
            else:
                image = build_operation(name, params).apply(image, OperationContext.default())
        encoded, _ = encode(image, "png")
        url = self.sim.files.store(call.base, encoded, "png")
        request_id = "pp_" + uuid.uuid4().hex[:24]
        body = {
            "status": "success",
            "processed_url": url,
            "execution_time_ms": round((time.perf_counter() - began) * 1000),
            "request_id": request_id,
        }
        return json_answer(200, body, "ok", request_id=request_id)

    def _batch_steps(self, operations: object) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(operations, list) or not 1 <= len(operations) <= 10:
            raise Refusal(400, "operations must be a list of 1 to 10 steps.", "invalid_operations")
        steps: list[tuple[str, dict[str, Any]]] = []
        for step in operations:
            name = step.get("operation") if isinstance(step, dict) else None
            if name not in self.operations:
                choices = "remove-background, enhance, upscale"
                raise Refusal(
                    400, f"Unknown operation {name!r}; expected one of {choices}.", "invalid_operations"
                )
            params = {"factor": scale_factor(step.get("scale_factor", 2))} if name == "upscale" else {}
            steps.append((self.operations[name], params))
        return steps


def scale_factor(value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value not in (2, 4):
        raise Refusal(400, f"scale_factor must be 2 or 4, not {value!r}.", "invalid_scale_factor")
    return int(value)  # type: ignore[call-overload]

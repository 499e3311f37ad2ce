"""fal's queue API wire format: submit, status, result and cancel, with a webhook when asked."""

from __future__ import annotations

import functools
from email.message import Message
from typing import Any, ClassVar
from urllib.parse import urlsplit

from simulator.calls import Answer, Call, Refusal, json_answer
from simulator.config import SimulatorConfig
from simulator.fal_images import FAL_IMAGE_SIZES, FAL_MAX_PIXELS
from simulator.formats.base import Format, Route, authorization


class Fal(Format):
    name = "fal"
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "402": (
            402,
            "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
            "locked",
        ),
    }

    def route(self, method: str, segments: list[str]) -> Route | None:
        if len(segments) >= 4 and segments[2] == "requests":
            app_id, request_id, tail = "/".join(segments[:2]), segments[3], segments[4:]
            if method == "GET" and tail == []:
                return Route(
                    "result", False, functools.partial(self.result, app_id=app_id, request_id=request_id)
                )
            if method == "GET" and tail == ["status"]:
                return Route(
                    "status", False, functools.partial(self.status, app_id=app_id, request_id=request_id)
                )
            if method == "PUT" and tail == ["cancel"]:
                return Route(
                    "cancel", False, functools.partial(self.cancel, app_id=app_id, request_id=request_id)
                )
            return None
        if method == "POST" and len(segments) >= 2:
            return Route("submit", True, functools.partial(self.submit, app_id="/".join(segments[:2])))
        return None

    def presented_key(self, headers: Message) -> str | None:
        return authorization(headers, "Key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        if field is not None:
            # Request validation errors come from pydantic, as a list.
            return {"detail": [{"loc": ["body", field], "msg": message, "type": code}]}
        return {"detail": message}

    def auth_failure(self, missing: bool) -> Answer:
        message = "Authentication is required to access this application." if missing else "Invalid API key."
        return self.error(401, message, "unauthorized", "unauthorized")

    def submit(self, call: Call, settings: SimulatorConfig, *, app_id: str) -> Answer:
        payload = call.json_object()
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Refusal(422, "field required", "value_error.missing", field="prompt")
        seed = payload.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise Refusal(
                422, "value is not a valid non-negative integer", "type_error.integer", field="seed"
            )
        num_images = payload.get("num_images", 1)
        if not isinstance(num_images, int) or isinstance(num_images, bool) or not 1 <= num_images <= 4:
            raise Refusal(
                422, "ensure this value is between 1 and 4", "value_error.number", field="num_images"
            )
        size = fal_image_size(payload.get("image_size", "landscape_4_3"))
        webhook = (call.query.get("fal_webhook") or [None])[-1]
        if webhook is not None and urlsplit(webhook).scheme not in ("http", "https"):
            raise Refusal(400, "fal_webhook must be an http(s) URL.", "invalid_webhook")
        if seed is None:
            seed = self.sim.faults.draw_seed()
        request, position = self.sim.fal_queue.submit(
            call.base, app_id, prompt, seed, size, num_images, webhook, settings
        )
        call.request_id = request.request_id
        body = {
            "request_id": request.request_id,
            "response_url": request.url,
            "status_url": request.url + "/status",
            "cancel_url": request.url + "/cancel",
            "queue_position": position,
        }
        return json_answer(200, body, "ok", request_id=request.request_id)

    def status(self, call: Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> Answer:
        request, status, position = self.sim.fal_queue.lookup(app_id, request_id)
        call.request_id = request_id
        if status == "IN_QUEUE":
            body: dict[str, Any] = {"status": status, "queue_position": position, "response_url": request.url}
            return json_answer(202, body, "ok", request_id=request_id)
        if status == "IN_PROGRESS":
            body = {"status": status, "logs": [], "response_url": request.url}
            return json_answer(202, body, "ok", request_id=request_id)
        if status == "COMPLETED":
            body = {
                "status": status,
                "logs": [],
                "metrics": {"inference_time": request.inference_time},
                "response_url": request.url,
            }
            return json_answer(200, body, "ok", request_id=request_id)
        return json_answer(200, {"status": status}, "ok", request_id=request_id)

    def result(self, call: Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> Answer:
        request, status, _ = self.sim.fal_queue.lookup(app_id, request_id)
        call.request_id = request_id
        if status == "COMPLETED":
            return json_answer(200, request.result, "ok", request_id=request_id)
        if status == "CANCELLED":
            raise Refusal(400, "Request was cancelled", "cancelled")
        raise Refusal(400, "Request is still in progress", "in_progress")

    def cancel(self, call: Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> Answer:
        call.request_id = request_id
        if self.sim.fal_queue.cancel(app_id, request_id):
            return json_answer(202, {"status": "CANCELLATION_REQUESTED"}, "ok", request_id=request_id)
        return json_answer(400, {"status": "ALREADY_COMPLETED"}, "bad_request", request_id=request_id)


def fal_image_size(value: object) -> tuple[int, int]:
    if isinstance(value, str) and value in FAL_IMAGE_SIZES:
        return FAL_IMAGE_SIZES[value]
    if isinstance(value, dict):
        width, height = value.get("width"), value.get("height")
        numbers = all(
            isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in (width, height)
        )
        if numbers and width * height <= FAL_MAX_PIXELS:  # type: ignore[operator]
            return int(width), int(height)  # type: ignore[arg-type]
    choices = ", ".join(FAL_IMAGE_SIZES)
    message = f"image_size must be one of {choices} or {{width, height}} of 16..4096 px, at most {FAL_MAX_PIXELS:,} pixels"
    raise Refusal(422, message, "value_error", field="image_size")

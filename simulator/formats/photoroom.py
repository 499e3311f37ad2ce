"""Photoroom's wire format: a form in, image bytes out with an uncertainty score."""

from __future__ import annotations

from email.message import Message
from typing import ClassVar

from jobs.imaging import decode_image
from simulator.calls import Answer, Call, Refusal
from simulator.config import SimulatorConfig
from simulator.formats.base import Format, Route, parse_bool, parse_colour
from simulator.formats.image_work import crop_to_subject, cut_out, encode, fit_pixels, uncertainty


class Photoroom(Format):
    name = "photoroom"
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "402": (
            402,
            "You have exhausted your API credits; upgrade your plan to continue.",
            "payment_required",
        ),
    }
    sizes: ClassVar[dict[str, int | None]] = {
        "preview": 250_000,
        "medium": 1_500_000,
        "hd": 4_000_000,
        "full": None,
    }

    def route(self, method: str, segments: list[str]) -> Route | None:
        if method == "POST" and segments == ["v1", "segment"]:
            return Route("segment", True, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return headers.get("x-api-key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"detail": message, "status_code": status, "type": code}

    def process(self, call: Call, settings: SimulatorConfig) -> Answer:
        form = call.form()
        data = self.image_input(call, data=form.files.get("image_file"))
        file_format = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}.get(
            form.fields.get("format", "png").strip().lower()
        )
        if file_format is None:
            raise Refusal(400, "format must be png, jpg or webp.", "invalid_format")
        size = form.fields.get("size", "full").strip().lower()
        if size not in self.sizes:
            raise Refusal(400, "size must be preview, medium, hd or full.", "invalid_size")
        background = parse_colour(form.fields["bg_color"]) if form.fields.get("bg_color") else None
        crop = parse_bool(form.fields.get("crop"), "crop")

        cutout = cut_out(fit_pixels(decode_image(data), self.sizes[size]), cheap=settings.cheap_cutouts)
        score = uncertainty(cutout.getchannel("A"))
        if crop:
            cutout = crop_to_subject(cutout)
        encoded, content_type = encode(cutout, file_format, background)
        headers = {"x-uncertainty-score": f"{score:.4f}"}
        return Answer(status=200, outcome="ok", body=encoded, content_type=content_type, headers=headers)

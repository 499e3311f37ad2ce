"""remove.bg's wire format: a form in, image bytes out, its rate limit reported on every answer."""

from __future__ import annotations

import math
import time
from email.message import Message
from typing import ClassVar

from jobs.errors import PermanentError
from jobs.imaging import decode_image
from simulator.calls import Answer, Call, Refusal
from simulator.config import SimulatorConfig
from simulator.formats.base import Format, Route, parse_bool, parse_colour
from simulator.formats.image_work import crop_to_subject, cut_out, encode, fit_pixels

# remove.bg documents 500 images per minute by default; we report it when no rate limit is configured.
REMOVEBG_DEFAULT_LIMIT = 500


class RemoveBg(Format):
    name = "removebg"
    unknown_foreground = (
        "Could not identify foreground in image. For details and recommendations see "
        "https://www.remove.bg/supported-images."
    )
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "400": (400, unknown_foreground, "unknown_foreground"),
    }
    # Largest output per `size`, in pixels (None: the original size).
    sizes: ClassVar[dict[str, int | None]] = {
        "preview": 250_000,
        "small": 250_000,
        "regular": 250_000,
        "medium": 1_500_000,
        "hd": 4_000_000,
        "full": None,
        "4k": None,
        "50mp": None,
        "auto": None,
    }
    types = ("auto", "person", "product", "car", "animal", "graphic", "transportation")

    def route(self, method: str, segments: list[str]) -> Route | None:
        if method == "POST" and segments == ["v1.0", "removebg"]:
            return Route("removebg", True, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return headers.get("X-Api-Key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"errors": [{"title": message, "code": code}]}

    def auth_failure(self, missing: bool) -> Answer:
        message = "Missing API Key" if missing else "API Key invalid"
        return self.error(403, message, "auth_failed", "unauthorized")

    def answer_headers(self, settings: SimulatorConfig) -> dict[str, str]:
        """X-RateLimit-*: the bucket's size, the tokens left, and when it is full again (epoch seconds)."""
        wall = time.time()
        if settings.rate_per_second is None:
            limit = remaining = REMOVEBG_DEFAULT_LIMIT
            reset = math.ceil(wall)
        else:
            tokens = self.sim.faults.tokens(self.name, settings)
            limit, remaining = settings.burst, math.floor(tokens)
            reset = math.ceil(wall + (settings.burst - tokens) / settings.rate_per_second)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def refusal_for(self, error: PermanentError) -> Refusal:
        if error.code in ("no_plain_background", "no_subject"):
            return Refusal(400, self.unknown_foreground, "unknown_foreground")
        return Refusal(400, error.message, "invalid_image")

    def process(self, call: Call, settings: SimulatorConfig) -> Answer:
        form = call.form()
        data = self.image_input(
            call,
            data=form.files.get("image_file"),
            b64=form.fields.get("image_file_b64"),
            url=form.fields.get("image_url"),
        )
        size = form.fields.get("size", "auto").strip().lower()
        if size not in self.sizes:
            raise Refusal(400, f"Invalid size {size!r}.", "invalid_size")
        subject_type = form.fields.get("type", "auto").strip().lower()
        if subject_type not in self.types:
            raise Refusal(400, f"Invalid type {subject_type!r}.", "invalid_type")
        file_format = {"auto": "png", "png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}.get(
            form.fields.get("format", "auto").strip().lower()
        )
        if file_format is None:
            raise Refusal(400, "Invalid format: use auto, png, jpg or webp.", "invalid_format")
        background = parse_colour(form.fields["bg_color"]) if form.fields.get("bg_color") else None
        crop = parse_bool(form.fields.get("crop"), "crop")
        channels = form.fields.get("channels", "rgba").strip().lower()
        if channels not in ("rgba", "alpha"):
            raise Refusal(400, "Invalid channels: use rgba or alpha.", "invalid_channels")

        cutout = cut_out(fit_pixels(decode_image(data), self.sizes[size]), cheap=settings.cheap_cutouts)
        if crop:
            cutout = crop_to_subject(cutout)
        output = cutout.getchannel("A") if channels == "alpha" else cutout
        encoded, content_type = encode(output, file_format, background)
        headers = {
            "X-Credits-Charged": "1",
            "X-Width": str(output.width),
            "X-Height": str(output.height),
            "X-Type": "product" if subject_type == "auto" else subject_type,
        }
        return Answer(status=200, outcome="ok", body=encoded, content_type=content_type, headers=headers)

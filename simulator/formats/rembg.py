"""The self-hosted rembg server's wire format: a form in, a cut-out or its mask out, no key by default."""

from __future__ import annotations

from email.message import Message

from PIL import ImageFilter

from jobs.imaging import decode_image
from simulator.calls import Answer, Call, Refusal
from simulator.config import SimulatorConfig
from simulator.formats.base import Format, Route, authorization, parse_bool, parse_int
from simulator.formats.image_work import cut_out, encode


class Rembg(Format):
    name = "rembg"
    self_hosted = True
    models = (
        "u2net",
        "u2netp",
        "u2net_human_seg",
        "u2net_cloth_seg",
        "silueta",
        "isnet-general-use",
        "isnet-anime",
        "sam",
        "birefnet-general",
        "birefnet-general-lite",
        "birefnet-portrait",
        "birefnet-dis",
        "birefnet-hrsod",
        "birefnet-cod",
        "birefnet-massive",
        "bria-rmbg",
    )

    def route(self, method: str, segments: list[str]) -> Route | None:
        if method == "POST" and segments == ["api", "remove"]:
            # Self-hosted: nobody bills for it, so it never runs out of credits.
            return Route("remove", False, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return authorization(headers, "Bearer")

    def auth_failure(self, missing: bool) -> Answer:
        return self.error(
            401, "Not authenticated" if missing else "Invalid API key", "unauthorized", "unauthorized"
        )

    def process(self, call: Call, settings: SimulatorConfig) -> Answer:
        form = call.form()
        data = self.image_input(call, data=form.files.get("file"))
        model = form.fields.get("model", "u2net").strip()
        if model not in self.models:
            raise Refusal(
                400, f"Unknown model {model!r}; available: {', '.join(self.models)}.", "invalid_model"
            )
        matting = parse_bool(form.fields.get("a"), "a")
        foreground = parse_int(form.fields.get("af"), "af", 240, 0, 255)
        background = parse_int(form.fields.get("ab"), "ab", 10, 0, 255)
        erode = parse_int(form.fields.get("ae"), "ae", 10, 0, 255)
        only_mask = parse_bool(form.fields.get("om"), "om")
        post_process = parse_bool(form.fields.get("ppm"), "ppm")

        # Alpha matting widens the soft edge by about half the erode size; af/ab are its trimap thresholds.
        cutout = cut_out(
            decode_image(data),
            feather=min(20.0, erode / 2) if matting else None,
            cheap=settings.cheap_cutouts,
        )
        alpha = cutout.getchannel("A")
        if matting:
            alpha = alpha.point(lambda v: 255 if v >= foreground else 0 if v <= background else v)
        if post_process:
            # rembg's post-processing smooths the mask and makes it binary.
            alpha = alpha.filter(ImageFilter.GaussianBlur(1)).point(lambda v: 255 if v >= 128 else 0)
        if only_mask:
            output = alpha
        else:
            cutout.putalpha(alpha)
            output = cutout
        encoded, content_type = encode(output, "png")
        return Answer(status=200, outcome="ok", body=encoded, content_type=content_type)

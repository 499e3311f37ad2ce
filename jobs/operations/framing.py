"""Steps that frame the subject: a canvas around it, a crop to an aspect ratio around it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from PIL import Image

from jobs.imaging import EXTENT_KEY, FOCUS_KEY, SUBJECT_KEY, ImageInfoDict, fill_crop
from jobs.operations.base import Operation, OperationContext
from jobs.operations.compositing import move_hints
from jobs.operations.params import ParamReader, aspect_ratio, colour_rgb

# A 45% margin makes the canvas 100× the subject's area; beyond this we shrink the subject instead.
MAX_CANVAS_PIXELS = 50_000_000


@dataclass(frozen=True)
class Canvas(Operation):
    background: str = "#ffffff"
    margin: float = 0.08
    aspect: str | None = None
    trim: bool = True

    name: ClassVar[str] = "canvas"
    label: ClassVar[str] = "Canvas"
    description: ClassVar[str] = (
        "Places the subject centred on a solid (or transparent) background with an even margin, "
        "optionally trimming its old border first and forcing an aspect ratio."
    )

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("background", "margin", "aspect", "trim"))
        return cls(
            background=reader.colour("background", "#ffffff", allow_transparent=True),
            margin=reader.number("margin", 0.08, 0, 0.45),
            aspect=reader.aspect("aspect"),
            trim=reader.boolean("trim", True),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        from jobs.operations.cutout import (
            content_box,  # numpy and OpenCV: loaded by the first step that needs them
        )

        crop = content_box(image) if self.trim else None
        crop = crop or (0, 0, image.width, image.height)
        subject = image.crop(crop) if crop != (0, 0, image.width, image.height) else image
        width, height = self.frame_for(subject.size)
        scale = min(1.0, math.sqrt(MAX_CANVAS_PIXELS / (width * height)))
        if scale < 1.0:
            size = (max(1, round(subject.width * scale)), max(1, round(subject.height * scale)))
            subject = subject.resize(size, Image.Resampling.LANCZOS)
        canvas_size = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))

        if self.background == "transparent":
            canvas = Image.new("RGBA", canvas_size, (0, 0, 0, 0))
        else:
            canvas = Image.new("RGB", canvas_size, colour_rgb(self.background))
        offset = ((canvas_size[0] - subject.width) // 2, (canvas_size[1] - subject.height) // 2)
        if subject.mode == "RGBA" and canvas.mode == "RGBA":
            canvas.alpha_composite(subject, offset)
        else:
            canvas.paste(subject, offset, subject if subject.mode == "RGBA" else None)
        canvas.info = move_hints(image.info, image.size, crop, scale, offset, canvas_size)
        return canvas

    def frame_for(self, subject: tuple[int, int]) -> tuple[float, float]:
        """The canvas around a subject of this size, before any size cap: the margin, then the aspect."""
        inner = 1 - 2 * self.margin
        width, height = subject[0] / inner, subject[1] / inner
        if self.aspect:
            ratio = aspect_ratio(self.aspect)
            width = max(width, height * ratio)
            height = width / ratio
        return width, height

    def source_scale(self) -> float | None:
        if self.trim:
            return None
        # Without trimming the source lands 1:1 on a canvas at least 1/(1 - 2·margin) larger.
        return 1 - 2 * self.margin if self.aspect is None else 1.0


@dataclass(frozen=True)
class SmartCrop(Operation):
    aspect: str | None = None
    focus: str = "auto"

    name: ClassVar[str] = "smart_crop"
    label: ClassVar[str] = "Smart crop"
    description: ClassVar[str] = (
        "Finds the subject (from transparency, a colour-rarity and sharpness saliency map, or the point "
        "a marketer clicked on the image) and "
        "crops to the aspect ratio around it; later 'fill' outputs also crop around it."
    )

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("aspect", "focus"))
        return cls(
            aspect=reader.aspect("aspect"),
            focus=reader.choice("focus", "auto", ("auto", "saliency", "subject")),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        crop, hints = self.plan(image)
        if EXTENT_KEY in image.info:
            hints[EXTENT_KEY] = image.info[EXTENT_KEY]
        if crop == (0, 0, image.width, image.height):
            # A new Image over the same pixels, not a copy: a 24 MP decode is 96 MB, and steps never
            # change their input in place.
            result = image._new(image.im)
            result.info = hints
            return result
        result = image.crop(crop)
        result.info = move_hints(hints, image.size, crop, 1.0, (0, 0), result.size)
        return result

    def plan(self, image: Image.Image) -> tuple[tuple[int, int, int, int], ImageInfoDict]:
        """The pixel box this step keeps of `image`, and the focus hints (in `image`'s coordinates).

        A focus already given (a marketer's click, passed in by the pipeline) wins over detection.
        """
        given = image.info.get(FOCUS_KEY)
        hints: ImageInfoDict
        if isinstance(given, tuple) and len(given) == 2:
            hints = {key: image.info[key] for key in (FOCUS_KEY, SUBJECT_KEY) if key in image.info}
        else:
            from jobs.operations.saliency import locate_subject  # numpy and OpenCV, as above

            subject = locate_subject(image, self.focus)
            hints = {FOCUS_KEY: subject.focus, SUBJECT_KEY: subject.box}
        if not self.aspect:
            return (0, 0, image.width, image.height), hints
        ratio = aspect_ratio(self.aspect)
        width, height = image.size
        crop_w, crop_h = (
            (round(height * ratio), height) if width / height > ratio else (width, round(width / ratio))
        )
        crop_w, crop_h = max(1, min(crop_w, width)), max(1, min(crop_h, height))
        # The same placement a `fill` output gets, so a crop here and a fill later agree.
        return fill_crop(image.size, (crop_w, crop_h), hints), hints

    def source_scale(self) -> float | None:
        return None if self.aspect else 1.0

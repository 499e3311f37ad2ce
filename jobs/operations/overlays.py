"""Steps that draw on the picture: a logo watermark, a text overlay."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from PIL import Image, ImageDraw, ImageFont

from jobs.errors import PermanentError
from jobs.imaging import decode_image
from jobs.operations.base import Operation, OperationContext
from jobs.operations.compositing import anchor, carry_hints, stamp
from jobs.operations.params import ParamReader, colour_rgb

DEFAULT_LOGO = "pixelmill-logo.png"
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
TEXT_POSITIONS = (*POSITIONS, "top", "bottom")

_MIN_TEXT_PX = 8


@dataclass(frozen=True)
class _TextLayout:
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    stroke: int
    origin: tuple[int, int]  # where to draw the text inside the box
    size: tuple[int, int]  # the box, padding included


def _layout_text(text: str, pixels: int, bold: bool, boxed: bool) -> _TextLayout:
    # Pillow's bundled FreeType font (Aileron Regular); a stroke in the text colour stands in for bold.
    font = ImageFont.load_default(size=pixels)
    stroke = max(1, round(pixels * 0.04)) if bold else 0
    # Pillow types the box as floats (a stroke may be fractional); with our whole-pixel stroke it is ints.
    left, top, right, bottom = map(int, font.getbbox(text, stroke_width=stroke))
    pad_x, pad_y = (round(pixels * 0.4), round(pixels * 0.25)) if boxed else (0, 0)
    size = (right - left + 2 * pad_x, bottom - top + 2 * pad_y)
    return _TextLayout(font=font, stroke=stroke, origin=(pad_x - left, pad_y - top), size=size)


@dataclass(frozen=True)
class Watermark(Operation):
    logo: str = DEFAULT_LOGO
    position: str = "bottom-right"
    scale: float = 0.18
    opacity: float = 0.85
    margin: float = 0.03

    name: ClassVar[str] = "watermark"
    label: ClassVar[str] = "Watermark"
    description: ClassVar[str] = "Stamps a logo in a corner or the centre, sized relative to the image width."

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("logo", "position", "scale", "opacity", "margin"))
        return cls(
            logo=reader.asset("logo", DEFAULT_LOGO),
            position=reader.choice("position", "bottom-right", POSITIONS),
            scale=reader.number("scale", 0.18, 0.02, 0.5),
            opacity=reader.number("opacity", 0.85, 0, 1),
            margin=reader.number("margin", 0.03, 0, 0.25),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        logo = decode_image(context.load_asset(self.logo), max_pixels=25_000_000).convert("RGBA")
        margin = round(self.margin * min(image.size))
        width = self.scale * image.width
        # A tall logo must still leave room for its margins.
        width = min(width, (image.height - 2 * margin) * logo.width / logo.height, image.width - 2 * margin)
        size = (max(1, round(width)), max(1, round(width * logo.height / logo.width)))
        logo = logo.resize(size, Image.Resampling.LANCZOS)
        if self.opacity < 1:
            logo.putalpha(logo.getchannel("A").point(lambda v: round(v * self.opacity)))
        return carry_hints(image, stamp(image, logo, anchor(self.position, image.size, size, margin)))


@dataclass(frozen=True)
class TextOverlay(Operation):
    text: str = ""
    position: str = "top-left"
    size: float = 0.09
    color: str = "#ffffff"
    background: str = "#d62828"
    bold: bool = True
    margin: float = 0.03

    name: ClassVar[str] = "text_overlay"
    label: ClassVar[str] = "Text overlay"
    description: ClassVar[str] = (
        "Writes a short line such as '20% OFF' on a rounded colour box, in Pillow's bundled Aileron "
        "font (Latin characters), shrunk if needed so it stays inside the image."
    )

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(
            cls.name, params, ("text", "position", "size", "color", "background", "bold", "margin")
        )
        return cls(
            text=reader.text("text", 80),
            position=reader.choice("position", "top-left", TEXT_POSITIONS),
            size=reader.number("size", 0.09, 0.02, 0.5),
            color=reader.colour("color", "#ffffff"),
            background=reader.colour("background", "#d62828", allow_none=True),
            bold=reader.boolean("bold", True),
            margin=reader.number("margin", 0.03, 0, 0.25),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        width, height = image.size
        margin = round(self.margin * min(width, height))
        room = (width - 2 * margin, height - 2 * margin)
        pixels = max(_MIN_TEXT_PX, round(self.size * height))
        while True:
            layout = _layout_text(self.text, pixels, self.bold, self.background != "none")
            if layout.size[0] <= room[0] and layout.size[1] <= room[1]:
                break
            if pixels <= _MIN_TEXT_PX:
                raise PermanentError(
                    f"The text {self.text!r} does not fit on a {width}×{height} image.", code="text_too_long"
                )
            shrink = min(room[0] / layout.size[0], room[1] / layout.size[1])
            pixels = max(_MIN_TEXT_PX, min(pixels - 1, math.floor(pixels * shrink)))

        layer = Image.new("RGBA", layout.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        if self.background != "none":
            draw.rounded_rectangle(
                (0, 0, layout.size[0] - 1, layout.size[1] - 1),
                radius=round(pixels * 0.25),
                fill=colour_rgb(self.background),
            )
        colour = colour_rgb(self.color)
        draw.text(
            layout.origin,
            self.text,
            font=layout.font,
            fill=colour,
            stroke_width=layout.stroke,
            stroke_fill=colour,
        )
        position = anchor(self.position, image.size, layout.size, margin)
        return carry_hints(image, stamp(image, layer, position))

"""Image operations as data: each validates its own params and applies itself with Pillow and numpy."""

from __future__ import annotations

import math
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps, ImageStat

from jobs.cutout import check_cutout, segment_with_grabcut
from jobs.errors import PermanentError
from jobs.imaging import FOCUS_KEY, SUBJECT_KEY, decode_image, fill_crop
from jobs.saliency import SalientSubject, salient_subject

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_LOGO = "pixelmill-logo.png"

# Upscaling and canvases must not create images no later step could afford to hold.
MAX_RESULT_PIXELS = 100_000_000
# A 45% margin makes the canvas 100× the subject's area; beyond this we shrink the subject instead.
MAX_CANVAS_PIXELS = 50_000_000

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
TEXT_POSITIONS = (*POSITIONS, "top", "bottom")

# Enhance's colour corrections are bounded so an opt-in correction can tint a photo but never recolour it.
WHITE_BALANCE_GAINS = (0.9, 1.11)
MAX_ENHANCE_SHIFT = 10

_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_ASPECT = re.compile(r"^\s*(\d{1,4})\s*:\s*(\d{1,4})\s*$")


class OperationParamsError(ValueError):
    """A recipe step's parameters are invalid; the message names the operation and parameter."""


def load_builtin_asset(name: str) -> bytes:
    """The bytes of a file shipped in jobs/assets/ (logos for `watermark`)."""
    if not _ASSET_NAME.match(name) or ".." in name:
        raise PermanentError(f"{name!r} is not a valid asset name.", code="missing_asset")
    path = ASSETS_DIR / name
    if not path.is_file():
        raise PermanentError(f"There is no built-in asset named {name!r}.", code="missing_asset")
    return path.read_bytes()


@dataclass(frozen=True)
class OperationContext:
    """What an operation may need from outside the image: logo bytes, a way to run a step remotely,
    and a list to leave notes in for the task ({"code", "message"}: "kept_whole" and why)."""

    load_asset: Callable[[str], bytes]
    remote: Callable[[Operation, Image.Image], Image.Image] | None = None
    notes: list[dict[str, str]] = field(default_factory=list, compare=False)

    @classmethod
    def default(cls) -> OperationContext:
        return cls(load_asset=load_builtin_asset)

    def note(self, code: str, message: str) -> None:
        self.notes.append({"code": code, "message": message})


# --- colours and aspect ratios, shared with jobs.rendering ----------------------------------------


def normalise_colour(value: object, *, allow_transparent: bool = False) -> str:
    """Canonical "#rrggbb" (or "transparent") for "#rgb"/"#rrggbb"; raises ValueError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if allow_transparent and text == "transparent":
            return "transparent"
        if _HEX_COLOUR.match(text):
            digits = text[1:]
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            return "#" + digits
    expected = '"#rgb", "#rrggbb"' + (' or "transparent"' if allow_transparent else "")
    raise ValueError(f"a colour written {expected}")


def colour_rgb(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of a canonical "#rrggbb" colour."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def normalise_aspect(value: object) -> str:
    """Canonical reduced "W:H" for an aspect ratio such as "16:9" or "2:2"; raises ValueError."""
    match = _ASPECT.match(value) if isinstance(value, str) else None
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if width and height and 0.1 <= width / height <= 10:
            divisor = math.gcd(width, height)
            return f"{width // divisor}:{height // divisor}"
    raise ValueError('an aspect ratio written "W:H" (for example "1:1" or "16:9"), between 1:10 and 10:1')


def aspect_ratio(aspect: str) -> float:
    width, height = aspect.split(":")
    return int(width) / int(height)


class ParamReader:
    """Reads one operation's params, naming the operation and the parameter in every error."""

    def __init__(self, operation: str, params: Mapping[str, object] | None, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise OperationParamsError(f"{operation}: parameters must be an object of name/value pairs")
        unknown = sorted(str(key) for key in params if key not in allowed)
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            expected = ", ".join(allowed) or "none"
            raise OperationParamsError(f"{operation}: unknown parameter {listed}; expected: {expected}")
        self.operation = operation
        self.params = params

    def error(self, key: str, requirement: str) -> OperationParamsError:
        return OperationParamsError(f"{self.operation}: '{key}' must be {requirement}")

    def _get(self, key: str, default: object) -> object:
        # JSON null means "use the default", which is what an emptied admin field sends.
        value = self.params.get(key)
        return default if value is None else value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._get(key, default)
        valid = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not valid or not low <= value <= high:  # type: ignore[operator]
            raise self.error(key, f"a number between {low:g} and {high:g}")
        return float(value)  # type: ignore[arg-type]

    def integer(self, key: str, default: int, choices: tuple[int, ...]) -> int:
        value = self._get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or value not in choices:
            raise self.error(key, "one of " + ", ".join(str(c) for c in choices))
        return int(value)  # type: ignore[call-overload]

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "true or false")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise self.error(key, "one of " + ", ".join(choices))
        return value.strip().lower()

    def colour(
        self, key: str, default: str, *, allow_transparent: bool = False, allow_none: bool = False
    ) -> str:
        value = self._get(key, default)
        if allow_none and isinstance(value, str) and value.strip().lower() in ("none", "transparent"):
            return "none"
        try:
            return normalise_colour(value, allow_transparent=allow_transparent)
        except ValueError as exc:
            requirement = str(exc) + (' or "none"' if allow_none else "")
            raise self.error(key, requirement) from None

    def aspect(self, key: str) -> str | None:
        value = self.params.get(key)
        if value is None or value == "":
            return None
        try:
            return normalise_aspect(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def text(self, key: str, max_length: int) -> str:
        value = self.params.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"a non-empty text of at most {max_length} characters")
        value = " ".join(value.split())
        if len(value) > max_length:
            raise self.error(key, f"at most {max_length} characters (it has {len(value)})")
        if any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co") for char in value):
            raise self.error(key, "plain text without control characters")
        return value

    def asset(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not _ASSET_NAME.match(value) or ".." in value:
            raise self.error(key, "the file name of an uploaded logo, such as 'pixelmill-logo.png'")
        return value


# --- the operations -------------------------------------------------------------------------------


class Operation(ABC):
    """One recipe step. Subclasses are frozen dataclasses whose fields are the canonical params."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    remote_capable: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        """Validate `params`, fill defaults, and raise OperationParamsError naming what is wrong."""

    def params(self) -> dict[str, object]:
        """All params with defaults filled, in a stable order: cache keys and the admin use it."""
        return {field.name: getattr(self, field.name) for field in fields(self)}  # type: ignore[arg-type]

    @abstractmethod
    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        """Return a new "RGB" or "RGBA" image; `image` is not modified."""

    def source_scale(self) -> float | None:
        """Input resolution needed per unit of output resolution; None when it cannot be known."""
        return 1.0

    def accept_result(
        self, image: Image.Image, result: Image.Image, context: OperationContext
    ) -> Image.Image:
        """Check what a provider made of `image` for this step; the result as it is by default."""
        return result


# Refusals that mean "this photo does not suit a cut-out", which if_unsuitable="keep" turns into
# keeping the photo whole; anything else (an undecodable file, a provider outage) still fails.
UNSUITABLE_CODES = frozenset({"no_plain_background", "no_subject", "unusable_cutout"})
KEPT_WHOLE = "kept_whole"


@dataclass(frozen=True)
class RemoveBackground(Operation):
    feather: float = 2.0
    threshold: float = 0.12
    if_unsuitable: str = "refuse"

    name: ClassVar[str] = "remove_background"
    label: ClassVar[str] = "Remove background"
    description: ClassVar[str] = (
        "Makes a plain or studio backdrop transparent (classical: a backdrop colour model and "
        "GrabCut, no AI). Busy backgrounds and cut-outs that fail the quality check are refused, "
        "or with if_unsuitable='keep' the photo goes on whole and the gallery says so."
    )
    remote_capable: ClassVar[bool] = True

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("feather", "threshold", "if_unsuitable"))
        return cls(
            feather=reader.number("feather", 2.0, 0, 20),
            threshold=reader.number("threshold", 0.12, 0.02, 0.5),
            if_unsuitable=reader.choice("if_unsuitable", "refuse", ("refuse", "keep")),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        if _already_cut_out(image):
            # Its backdrop is gone already, and the mask is the user's own, not ours to judge.
            return carry_hints(image, image.copy())
        try:
            alpha = background_alpha(image, threshold=self.threshold, feather=self.feather)
            if image.mode == "RGBA":
                # Whatever was already transparent stays transparent.
                alpha = ImageChops.multiply(alpha, image.getchannel("A"))
            check_cutout(image, alpha)
        except PermanentError as error:
            return self.keep_whole(image, error, context)
        result = image.convert("RGBA")
        result.putalpha(alpha)
        return carry_hints(image, result)

    def accept_result(
        self, image: Image.Image, result: Image.Image, context: OperationContext
    ) -> Image.Image:
        """A provider's cut-out of `image` passes the same gate as ours, or is handled the same way."""
        if result.mode != "RGBA":
            return result  # flattened onto a colour by the provider: no mask for the gate to judge
        try:
            check_cutout(image, result.getchannel("A"))
        except PermanentError as error:
            return self.keep_whole(image, error, context)
        return result

    def keep_whole(self, image: Image.Image, error: PermanentError, context: OperationContext) -> Image.Image:
        """The photo unchanged, with a note saying why, when the recipe says so; else the refusal."""
        if self.if_unsuitable != "keep" or error.code not in UNSUITABLE_CODES:
            raise error
        context.note(KEPT_WHOLE, error.message)
        return carry_hints(image, image.copy())


@dataclass(frozen=True)
class Enhance(Operation):
    # Colour corrections are opt-in: on the real-photo corpus the old defaults (white balance on, cutoff
    # 0.5) moved an output's mean colour by up to 100 levels (warm wood went grey, a dusk sky cyan).
    cutoff: float = 0.0
    white_balance: bool = False
    sharpen: float = 0.6

    name: ClassVar[str] = "enhance"
    label: ClassVar[str] = "Enhance"
    description: ClassVar[str] = (
        "Sharpens lightly; optionally neutralises a colour cast (white_balance) and stretches contrast "
        f"(cutoff), both off by default and bounded: white-balance gains stay within {WHITE_BALANCE_GAINS[0]}"
        f"..{WHITE_BALANCE_GAINS[1]} and no channel's average moves more than {MAX_ENHANCE_SHIFT} levels "
        "of 255 (classical corrections, not AI retouching)."
    )
    remote_capable: ClassVar[bool] = True

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("cutoff", "white_balance", "sharpen"))
        return cls(
            cutoff=reader.number("cutoff", 0.0, 0, 10),
            white_balance=reader.boolean("white_balance", False),
            sharpen=reader.number("sharpen", 0.6, 0, 2),
        )

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        rgb, alpha = _split_alpha(image)
        # Judge the picture by what is visible: transparent pixels often hold a white backdrop.
        visible = alpha.point(lambda v: 255 if v >= 128 else 0) if alpha is not None else None
        corrected = rgb
        if self.white_balance:
            corrected = _balance_white(corrected, visible)
        if self.cutoff > 0:
            corrected = ImageOps.autocontrast(corrected, cutoff=self.cutoff, mask=visible, preserve_tone=True)
        if self.sharpen > 0:
            radius = 1.0 + max(rgb.size) / 3000
            corrected = corrected.filter(
                ImageFilter.UnsharpMask(radius=radius, percent=round(self.sharpen * 100), threshold=2)
            )
        # Bounded last, so the promise holds for the step as a whole (strong sharpening clips a little too).
        rgb = _bound_shift(rgb, corrected, visible, MAX_ENHANCE_SHIFT)
        return carry_hints(image, _join_alpha(rgb, alpha))


@dataclass(frozen=True)
class Upscale(Operation):
    factor: int = 2

    name: ClassVar[str] = "upscale"
    label: ClassVar[str] = "Upscale"
    description: ClassVar[str] = (
        "Enlarges 2× or 4× with Lanczos resampling and a light unsharp mask; classical "
        "interpolation, it cannot invent detail the way AI super-resolution does."
    )
    remote_capable: ClassVar[bool] = True

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        reader = ParamReader(cls.name, params, ("factor",))
        return cls(factor=reader.integer("factor", 2, (2, 4)))

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        size = (image.width * self.factor, image.height * self.factor)
        if size[0] * size[1] > MAX_RESULT_PIXELS:
            raise PermanentError(
                f"Upscaling {image.width}×{image.height} by {self.factor} would make "
                f"{size[0]}×{size[1]} pixels, over the {MAX_RESULT_PIXELS // 1_000_000} megapixel limit.",
                code="too_large",
            )
        rgb, alpha = _split_alpha(image.resize(size, Image.Resampling.LANCZOS))
        # Lanczos leaves edges soft at this magnification; a small-radius mask restores crispness.
        rgb = rgb.filter(ImageFilter.UnsharpMask(radius=0.5 * self.factor, percent=50, threshold=2))
        return carry_hints(image, _join_alpha(rgb, alpha))

    def source_scale(self) -> float | None:
        return 1 / self.factor


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
        canvas.info = _move_hints(image.info, image.size, crop, scale, offset, canvas_size)
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
        if crop == (0, 0, image.width, image.height):
            result = image.copy()
            result.info = hints
            return result
        result = image.crop(crop)
        result.info = _move_hints(hints, image.size, crop, 1.0, (0, 0), result.size)
        return result

    def plan(self, image: Image.Image) -> tuple[tuple[int, int, int, int], dict[str, tuple[float, ...]]]:
        """The pixel box this step keeps of `image`, and the focus hints (in `image`'s coordinates).

        A focus already given (a marketer's click, passed in by the pipeline) wins over detection.
        """
        given = image.info.get(FOCUS_KEY)
        hints: dict[str, tuple[float, ...]]
        if isinstance(given, tuple) and len(given) == 2:
            hints = {key: image.info[key] for key in (FOCUS_KEY, SUBJECT_KEY) if key in image.info}
        else:
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
        return carry_hints(image, _stamp(image, logo, _anchor(self.position, image.size, size, margin)))


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
        position = _anchor(self.position, image.size, layout.size, margin)
        return carry_hints(image, _stamp(image, layer, position))


OPERATIONS: dict[str, type[Operation]] = {
    RemoveBackground.name: RemoveBackground,
    Enhance.name: Enhance,
    Upscale.name: Upscale,
    Canvas.name: Canvas,
    SmartCrop.name: SmartCrop,
    Watermark.name: Watermark,
    TextOverlay.name: TextOverlay,
}


def build_operation(name: str, params: Mapping[str, object] | None) -> Operation:
    """The validated operation `name` with `params`; OperationParamsError for anything wrong."""
    operation = OPERATIONS.get(name)
    if operation is None:
        raise OperationParamsError(f"unknown operation {name!r}; choose one of: {', '.join(OPERATIONS)}")
    return operation.from_params(params)


# --- background removal ---------------------------------------------------------------------------

# The backdrop is modelled and segmented at this size; only the edge band is refined at full size.
_MASK_LONG_SIDE = 512
# Share of border pixels that must match the backdrop model for the backdrop to count as plain.
_MIN_PLAIN_BORDER = 0.6


def background_alpha(image: Image.Image, *, threshold: float = 0.12, feather: float = 2.0) -> Image.Image:
    """An "L" alpha mask, 0 on a plain backdrop connected to the picture's border, 255 on the subject.

    The backdrop colour is a smooth (quadratic) surface fitted to the border pixels in CIE Lab,
    so studio sweeps and vignettes count as backdrop. Pixels within `threshold` (ΔE/100) of it
    that connect to the border are background; enclosed regions (a white label on a bottle) stay.
    Raises PermanentError(code="no_plain_background") when the border does not look like a
    plain backdrop, and code="no_subject" when nothing stands out from it.
    """
    rgb = image.convert("RGB")
    scale = min(1.0, _MASK_LONG_SIDE / max(rgb.size))
    small_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(small_size, Image.Resampling.BILINEAR, reducing_gap=2.0) if scale < 1 else rgb
    lab = srgb_to_lab(np.asarray(small))
    height, width = lab.shape[:2]

    band = max(2, round(0.02 * max(width, height)))
    rows, cols = np.mgrid[0:height, 0:width]
    border = (rows < band) | (rows >= height - band) | (cols < band) | (cols >= width - band)
    tolerance = threshold * 100
    model = _BackdropModel.fit(
        lab[border], cols[border] / max(1, width - 1), rows[border] / max(1, height - 1), tolerance
    )
    if model.inlier_share < _MIN_PLAIN_BORDER:
        raise PermanentError(
            "Background removal needs a plain or studio backdrop, and the edges of this picture "
            f"are too varied (only {model.inlier_share:.0%} of them look like one backdrop colour). "
            "Use a photo on a plain background, or a remote provider.",
            code="no_plain_background",
        )
    # Noisy backdrops (high ISO, JPEG grain) get a proportionally wider tolerance.
    tolerance += 2 * model.noise
    xs, ys = np.linspace(0, 1, width), np.linspace(0, 1, height)
    distance = model.distance(lab, xs[None, :], ys[:, None])

    passable = distance < tolerance
    ring = np.zeros_like(passable)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    backdrop = connected_to(passable, passable & ring)
    # The colour threshold alone keeps shadows and loses subject pixels near the backdrop's
    # colour; GrabCut starts from its verdict and settles both by colour models and edges.
    kept = segment_with_grabcut(np.asarray(small), backdrop, backdrop & border)
    backdrop = connected_to(~kept, ~kept & ring)
    subject = Image.fromarray(np.where(backdrop, 0, 255).astype(np.uint8))
    # Median drops isolated noisy specks; max-then-min closes pin holes and hairline cracks.
    subject = subject.filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.MaxFilter(3))
    subject = subject.filter(ImageFilter.MinFilter(3))
    if np.count_nonzero(np.asarray(subject)) < 0.002 * width * height:
        raise PermanentError("Found no subject: the whole picture matches its backdrop.", code="no_subject")

    alpha = np.array(subject) if scale == 1.0 else _refine_edges(rgb, subject, model, tolerance)
    mask = Image.fromarray(alpha)
    if feather > 0:
        mask = _feather(mask, feather)
    return mask


@dataclass(frozen=True)
class _BackdropModel:
    """A quadratic surface per Lab channel over normalised (x, y), fitted robustly to the border."""

    coefficients: np.ndarray  # 6 × 3
    inlier_share: float
    noise: float

    @staticmethod
    def _terms(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        x, y = np.broadcast_arrays(x, y)
        return [np.ones_like(x), x, y, x * x, x * y, y * y]

    @classmethod
    def fit(cls, values: np.ndarray, x: np.ndarray, y: np.ndarray, tolerance: float) -> _BackdropModel:
        design = np.stack(cls._terms(x, y), axis=1)
        # Start from the median colour, then refit on the pixels the surface explains: the
        # subject touching the border is an outlier, not part of the backdrop.
        residual = np.linalg.norm(values - np.median(values, axis=0), axis=1)
        coefficients = np.zeros((6, 3), dtype=np.float64)
        for _ in range(3):
            inliers = residual < tolerance
            if np.count_nonzero(inliers) < 12:
                break
            coefficients, *_ = np.linalg.lstsq(design[inliers], values[inliers], rcond=None)
            residual = np.linalg.norm(values - design @ coefficients, axis=1)
        inliers = residual < tolerance
        share = float(np.mean(inliers))
        noise = float(1.4826 * np.median(residual[inliers])) if share > 0 else tolerance
        return cls(coefficients, share, noise)

    def distance(self, lab: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        predicted = sum(term[..., None] * self.coefficients[i] for i, term in enumerate(self._terms(x, y)))
        return np.linalg.norm(lab - predicted, axis=-1)


def _already_cut_out(image: Image.Image) -> bool:
    """An RGBA picture whose border is mostly transparent has had its backdrop removed already."""
    if image.mode != "RGBA" or min(image.size) < 3:
        return False
    alpha = np.asarray(image.getchannel("A"))
    border = np.concatenate([alpha[0], alpha[-1], alpha[1:-1, 0], alpha[1:-1, -1]])
    return float(np.mean(border < 128)) >= _MIN_PLAIN_BORDER


def _refine_edges(
    rgb: Image.Image, subject: Image.Image, model: _BackdropModel, tolerance: float
) -> np.ndarray:
    # The small mask is only accurate to one small pixel (8 full pixels at 12 MP). Where its
    # upsampled version is undecided, judge each full-resolution pixel by its own colour.
    alpha = np.array(subject.resize(rgb.size, Image.Resampling.BILINEAR))
    undecided = np.flatnonzero((alpha > 0) & (alpha < 255))
    if undecided.size == 0:
        return alpha
    rows, cols = np.divmod(undecided, rgb.width)
    pixels = np.asarray(rgb).reshape(-1, 3)[undecided]
    distance = model.distance(
        srgb_to_lab(pixels), cols / max(1, rgb.width - 1), rows / max(1, rgb.height - 1)
    )
    # A soft ramp from "backdrop" to twice as far keeps anti-aliased edges anti-aliased.
    ramp = np.clip((distance - tolerance) / tolerance, 0, 1)
    alpha.reshape(-1)[undecided] = np.rint(ramp * 255).astype(np.uint8)
    return alpha


def _feather(mask: Image.Image, radius: float) -> Image.Image:
    # Only the edges change under a blur; blurring just their bounding box saves most of the work.
    edges = mask.filter(ImageFilter.FIND_EDGES).getbbox()
    if edges is None:
        return mask
    pad = math.ceil(radius * 3) + 2
    box = (
        max(0, edges[0] - pad),
        max(0, edges[1] - pad),
        min(mask.width, edges[2] + pad),
        min(mask.height, edges[3] + pad),
    )
    blurred = mask.crop(box).filter(ImageFilter.GaussianBlur(radius))
    result = mask.copy()
    result.paste(blurred, box[:2])
    return result


def connected_to(passable: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The `passable` pixels 4-connected to a seed, by alternating row and column run sweeps.

    Each sweep marks every run of passable pixels that touches a reached pixel, so a region is
    filled in as many sweeps as its paths have turns, each sweep a few vectorised numpy passes.
    """
    height, width = passable.shape
    row_runs = _run_ids(passable)
    column_runs = _run_ids(np.ascontiguousarray(passable.T))
    reached = seeds & passable
    count = int(np.count_nonzero(reached))
    while True:
        reached = _spread(row_runs, passable, reached)
        reached = _spread(column_runs, passable.T, reached.T).T
        new_count = int(np.count_nonzero(reached))
        if new_count == count:
            return np.ascontiguousarray(reached)
        count = new_count


def _run_ids(passable: np.ndarray) -> np.ndarray:
    starts = passable.copy()
    starts[:, 1:] &= ~passable[:, :-1]
    return np.cumsum(starts.ravel()).reshape(passable.shape)


def _spread(run_ids: np.ndarray, passable: np.ndarray, reached: np.ndarray) -> np.ndarray:
    touched = np.zeros(int(run_ids[-1, -1]) + 2, dtype=bool)
    touched[run_ids[reached]] = True
    return touched[run_ids] & passable


_SRGB_TO_LINEAR = np.where(
    np.arange(256) / 255 <= 0.04045,
    np.arange(256) / 255 / 12.92,
    ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4,
).astype(np.float32)
# Linear sRGB to XYZ (D65), each row divided by the D65 white so white maps to (1, 1, 1).
_RGB_TO_XYZ = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).astype(np.float32)


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of uint8 sRGB pixels shaped (..., 3), as float32."""
    linear = _SRGB_TO_LINEAR[pixels]
    xyz = linear @ _RGB_TO_XYZ.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


# --- subject location -----------------------------------------------------------------------------


def locate_subject(image: Image.Image, method: str = "auto") -> SalientSubject:
    """The subject's normalised box and focus: alpha bounding box, backdrop contrast or saliency."""
    if min(image.size) < 3:
        # Too small to hold a subject of its own: all of it is the subject.
        return SalientSubject((0.0, 0.0, 1.0, 1.0), (0.5, 0.5))
    box = None
    if method in ("auto", "subject") and image.mode == "RGBA":
        box = image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    if box is None and method == "subject":
        box = content_box(image)
    if box is None:
        return salient_subject(image)
    x0, y0, x1, y1 = _normalised(box, image.size)
    return SalientSubject((x0, y0, x1, y1), ((x0 + x1) / 2, (y0 + y1) / 2))


def content_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Pixel box of what is not transparent or not the plain border colour; None if undecidable."""
    if image.mode == "RGBA":
        return image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    scale = min(1.0, _MASK_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    lab = srgb_to_lab(np.asarray(small))
    edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    colour = np.median(edge, axis=0)
    if np.mean(np.linalg.norm(edge - colour, axis=1) < 12) < _MIN_PLAIN_BORDER:
        return None  # no single border colour: nothing to trim
    differs = Image.fromarray(np.where(np.linalg.norm(lab - colour, axis=-1) > 12, 255, 0).astype(np.uint8))
    box = differs.filter(ImageFilter.MedianFilter(3)).getbbox()
    if box is None:
        return None
    # Map back with one small pixel of slack so anti-aliased edges are not cut.
    return (
        max(0, math.floor((box[0] - 1) / scale)),
        max(0, math.floor((box[1] - 1) / scale)),
        min(image.width, math.ceil((box[2] + 1) / scale)),
        min(image.height, math.ceil((box[3] + 1) / scale)),
    )


def _normalised(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[float, float, float, float]:
    return (box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1])


# --- small shared pieces --------------------------------------------------------------------------


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    return (image if image.mode == "RGB" else image.convert("RGB")), None


def _join_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return rgb
    result = rgb.convert("RGBA")
    result.putalpha(alpha)
    return result


def carry_hints(source: Image.Image, result: Image.Image) -> Image.Image:
    """Give `result` (same geometry as `source`) the source's focus hints and nothing else."""
    result.info = {key: source.info[key] for key in (FOCUS_KEY, SUBJECT_KEY) if key in source.info}
    return result


def _move_hints(
    info: Mapping[str, object],
    size: tuple[int, int],
    crop: tuple[int, int, int, int],
    scale: float,
    offset: tuple[int, int],
    new_size: tuple[int, int],
) -> dict[str, tuple[float, ...]]:
    """Focus hints re-expressed after cropping `crop`, scaling by `scale` and pasting at `offset`."""

    def move(x: float, y: float) -> tuple[float, float]:
        px = (x * size[0] - crop[0]) * scale + offset[0]
        py = (y * size[1] - crop[1]) * scale + offset[1]
        return min(max(px / new_size[0], 0.0), 1.0), min(max(py / new_size[1], 0.0), 1.0)

    hints: dict[str, tuple[float, ...]] = {}
    focus = info.get(FOCUS_KEY)
    if isinstance(focus, tuple) and len(focus) == 2:
        hints[FOCUS_KEY] = move(*focus)
    subject = info.get(SUBJECT_KEY)
    if isinstance(subject, tuple) and len(subject) == 4:
        hints[SUBJECT_KEY] = (*move(subject[0], subject[1]), *move(subject[2], subject[3]))
    return hints


def _anchor(position: str, canvas: tuple[int, int], item: tuple[int, int], margin: int) -> tuple[int, int]:
    """Top-left corner that puts `item` at `position` ("top-left", "center", "bottom", ...)."""
    horizontal = {"left": margin, "right": canvas[0] - item[0] - margin}
    vertical = {"top": margin, "bottom": canvas[1] - item[1] - margin}
    centre = ((canvas[0] - item[0]) // 2, (canvas[1] - item[1]) // 2)
    parts = position.split("-")
    x = next((horizontal[p] for p in parts if p in horizontal), centre[0])
    y = next((vertical[p] for p in parts if p in vertical), centre[1])
    return x, y


def _stamp(image: Image.Image, layer: Image.Image, position: tuple[int, int]) -> Image.Image:
    """`image` with the RGBA `layer` composited at `position`, in the image's own mode."""
    if image.mode == "RGBA":
        result = image.copy()
        result.alpha_composite(layer, position)
        return result
    result = image.convert("RGB") if image.mode != "RGB" else image.copy()
    result.paste(layer, position, layer)
    return result


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
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad_x, pad_y = (round(pixels * 0.4), round(pixels * 0.25)) if boxed else (0, 0)
    size = (right - left + 2 * pad_x, bottom - top + 2 * pad_y)
    return _TextLayout(font=font, stroke=stroke, origin=(pad_x - left, pad_y - top), size=size)


def _balance_white(rgb: Image.Image, visible: Image.Image | None) -> Image.Image:
    """Grey-world white balance over near-neutral pixels, gains clamped to WHITE_BALANCE_GAINS.

    Averaging only low-saturation pixels estimates the light's cast without letting a big blue
    product drag the whole picture towards orange; with too few of them we leave colours alone.
    """
    scale = min(1.0, 256 / max(rgb.size))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    pixels = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)
    peak, low = pixels.max(axis=-1), pixels.min(axis=-1)
    # 0.4 admits a grey under a strong cast; the clamped gains then undo only part of it.
    neutral = (peak > 20) & (peak < 250) & ((peak - low) <= 0.4 * peak)
    if visible is not None:
        neutral &= np.asarray(visible.resize(size, Image.Resampling.NEAREST)) > 0
    if np.count_nonzero(neutral) < 0.05 * neutral.size:
        return rgb
    means = pixels[neutral].mean(axis=0)
    gains = np.clip(means.mean() / np.maximum(means, 1.0), *WHITE_BALANCE_GAINS)
    lut = [min(255, round(v * gain)) for gain in gains for v in range(256)]
    return rgb.point(lut)


def _bound_shift(
    original: Image.Image, corrected: Image.Image, visible: Image.Image | None, limit: float
) -> Image.Image:
    """`corrected`, blended back towards `original` just enough that no channel's visible mean moves
    more than `limit` levels: blending is linear, so the means move by the same fraction."""
    if corrected is original:
        return original
    if visible is not None and visible.getbbox() is None:
        return original
    before = np.array(ImageStat.Stat(original, visible).mean)
    after = np.array(ImageStat.Stat(corrected, visible).mean)
    shift = np.abs(after - before).max()
    if shift <= limit:
        return corrected
    # A level of slack: the blend truncates every pixel.
    return Image.blend(original, corrected, (limit - 1) / shift)

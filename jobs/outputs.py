"""Output specs and channel rules: each variant's box, fit, format and encoder options, and the rules its file keeps."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from PIL import features

from jobs.operations import aspect_ratio, normalise_aspect, normalise_colour

FITS = ("fit", "fill", "pad")
FORMATS = ("jpeg", "webp", "png", "avif")
# Encoder effort per output, with the format each applies to and its default. The costs measured
# on a 2000×2000 output are in docs/performance.md ("Encoder options"); see also
# https://pillow.readthedocs.io/en/stable/handbook/image-file-formats.html
WEBP_METHODS = range(0, 7)  # libwebp's method: 0 fastest, 6 smallest files
AVIF_SPEEDS = range(0, 11)  # libavif's speed: 0 slowest and smallest, 10 fastest
ENCODER_DEFAULTS: dict[str, object] = {"webp_method": 4, "progressive": False, "avif_speed": 8}
ENCODER_FORMATS = {"webp_method": "webp", "progressive": "jpeg", "avif_speed": "avif"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "png": "png", "avif": "avif"}
MAX_SIDE = 10_000
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")

# Channel rules an output spec may carry; each is checked on the rendered file (see check_rules).
RULE_FIELDS = ("max_bytes", "min_width", "min_height", "aspect")
# A byte budget steps quality down only in formats where quality means something.
LOSSY_FORMATS = ("jpeg", "webp", "avif")
# Past this enlargement from the photo's own pixels an output looks soft, and a badge or text drawn on a
# small photo comes out blocky: the output is flagged for a person to look at (rule "enlarged").
MAX_ENLARGEMENT = 1.5
# Past this one nobody would use it (a flat smear of colour from a 1×1 or 20 px photo): it is not made, and
# the marketer reads which output and what size of photo it needs (see not_made_reason).
MAX_ENLARGEMENT_MADE = 4.0


class OutputSpecError(ValueError):
    """An output spec is invalid; the message names the field."""


@dataclass(frozen=True)
class OutputSpec:
    """One named variant: its box, how the image meets the box, and how it is encoded."""

    name: str
    width: int
    height: int
    fit: str = "fit"
    format: str = "jpeg"
    quality: int | None = None
    background: str = "#ffffff"
    webp_method: int = 4
    progressive: bool = False
    avif_speed: int = 8
    # Channel rules (e.g. a display ad: at most 150 KB); None means no rule.
    max_bytes: int | None = None
    min_width: int | None = None
    min_height: int | None = None
    aspect: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OutputSpec:
        known = {
            "name",
            "width",
            "height",
            "fit",
            "format",
            "quality",
            "background",
            *ENCODER_DEFAULTS,
            *RULE_FIELDS,
        }
        unknown = set(data) - known
        if unknown:
            raise OutputSpecError(f"output: unknown field(s) {', '.join(sorted(unknown))}")
        name = str(data.get("name") or "")
        if not _SLUG.match(name):
            raise OutputSpecError(f"output {name!r}: the name must be a slug (a-z, 0-9, - and _)")
        size = []
        for key in ("width", "height"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                raise OutputSpecError(f"output {name}: '{key}' must be a whole number from 1 to {MAX_SIDE}")
            size.append(value)
        fit = str(data.get("fit") or "fit")
        if fit not in FITS:
            raise OutputSpecError(f"output {name}: 'fit' must be one of {', '.join(FITS)}")
        fmt = str(data.get("format") or "jpeg").lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in FORMATS:
            raise OutputSpecError(f"output {name}: 'format' must be one of {', '.join(FORMATS)}")
        if fmt == "avif" and not features.check("avif"):
            raise OutputSpecError(f"output {name}: this Pillow build cannot write AVIF")
        quality = data.get("quality")
        if quality is not None and (
            isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100
        ):
            raise OutputSpecError(f"output {name}: 'quality' must be a whole number from 1 to 100, or empty")
        try:
            background = normalise_colour(data.get("background") or "#ffffff", allow_transparent=True)
        except ValueError as error:
            raise OutputSpecError(f"output {name}: 'background' must be {error}") from None
        if background == "transparent" and fmt == "jpeg":
            raise OutputSpecError(f"output {name}: JPEG has no transparency; pick a background colour")
        encoder = read_encoder_options(name, fmt, data)
        spec = cls(name, size[0], size[1], fit, fmt, quality, background, **encoder)
        return replace(spec, **read_rules(spec, data))

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "fit": self.fit,
            "format": self.format,
            "quality": self.quality,
            "background": self.background,
            "webp_method": self.webp_method,
            "progressive": self.progressive,
            "avif_speed": self.avif_speed,
            **{rule: getattr(self, rule) for rule in RULE_FIELDS},
        }

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    def resized_size(self, source: tuple[int, int]) -> tuple[int, int]:
        """Size the source is scaled to before any crop or padding."""
        sw, sh = source
        if self.fit == "fill":
            scale = max(self.width / sw, self.height / sh)
        else:
            scale = min(self.width / sw, self.height / sh)
            if self.fit == "fit":
                scale = min(scale, 1.0)  # fit never enlarges; pad and fill always give the exact box
        return max(1, round(sw * scale)), max(1, round(sh * scale))


def read_rules(spec: OutputSpec, data: Mapping[str, object]) -> dict[str, Any]:
    """The channel rules in `data`, validated against the box: a rule the box can never meet is refused
    here, in the admin, rather than flagged on every output later."""
    rules: dict[str, Any] = {}
    max_bytes = data.get("max_bytes")
    if max_bytes is not None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise OutputSpecError(
                f"output {spec.name}: 'max_bytes' must be a whole number of bytes, or empty"
            )
        rules["max_bytes"] = max_bytes
    for key, side in (("min_width", spec.width), ("min_height", spec.height)):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            raise OutputSpecError(f"output {spec.name}: '{key}' must be a whole number from 1 to {MAX_SIDE}")
        if value > side:
            # No fit mode makes an output larger than its box.
            raise OutputSpecError(
                f"output {spec.name}: '{key}' {value} can never be met by a {spec.width}×{spec.height} box"
            )
        rules[key] = value
    aspect = data.get("aspect")
    if aspect not in (None, ""):
        try:
            aspect = normalise_aspect(aspect)
        except ValueError as error:
            raise OutputSpecError(f"output {spec.name}: 'aspect' must be {error}") from None
        if spec.fit != "fit" and not aspect_matches(spec.width, spec.height, aspect):
            raise OutputSpecError(
                f"output {spec.name}: a {spec.fit} output is exactly {spec.width}×{spec.height}, "
                f"which is never {aspect}; change the box or the rule"
            )
        rules["aspect"] = aspect
    return rules


@dataclass(frozen=True)
class RuleViolation:
    """A channel rule a rendered output breaks, worded for the marketer who has to deal with it."""

    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def kilobytes(size: int) -> str:
    """1024-based like the gallery's file sizes, so "150 KB" reads the same everywhere."""
    value = size / 1024
    return f"{value:.0f} KB" if value >= 100 or value == int(value) else f"{value:.1f} KB"


def aspect_matches(width: int, height: int, aspect: str) -> bool:
    """Within a pixel of rounding: 1200×628 is 300:157, and 1199×628 would still pass."""
    ratio = aspect_ratio(aspect)
    return abs(width - height * ratio) <= 1 or abs(height - width / ratio) <= 1


def check_rules(
    spec: OutputSpec,
    width: int,
    height: int,
    byte_size: int,
    quality: int | None,
    source: tuple[int, int] | None = None,
) -> tuple[RuleViolation, ...]:
    """Every channel rule of `spec` that the rendered output breaks; with the `source` size it was made
    from, also an output enlarged past MAX_ENLARGEMENT, which no channel accepts looking soft."""
    broken: list[RuleViolation] = []
    if source is not None:
        enlargement = enlargement_of(spec, source)
        if enlargement > MAX_ENLARGEMENT:
            shown = (max(1, round(width / enlargement)), max(1, round(height / enlargement)))
            broken.append(
                RuleViolation(
                    "enlarged",
                    f"enlarged {enlargement:.1f}× from {shown[0]}×{shown[1]} pixels of the photo: "
                    "it will look soft (use a larger photo)",
                )
            )
    if spec.max_bytes is not None and byte_size > spec.max_bytes:
        if spec.format in LOSSY_FORMATS:
            how = f"even at quality {quality}" if quality is not None else "as encoded"
        else:
            how = f"{spec.format.upper()} is lossless: pick JPEG or WebP to meet a size limit"
        broken.append(
            RuleViolation(
                "max_bytes", f"{kilobytes(byte_size)}, over the {kilobytes(spec.max_bytes)} limit ({how})"
            )
        )
    min_width, min_height = spec.min_width or 0, spec.min_height or 0
    if width < min_width or height < min_height:
        broken.append(
            RuleViolation(
                "min_size",
                f"{width}×{height}, smaller than the {min_width or '–'}×{min_height or '–'} minimum "
                "(the source image is too small)",
            )
        )
    if spec.aspect and not aspect_matches(width, height, spec.aspect):
        actual = normalise_aspect(f"{width}:{height}") if 0.1 <= width / height <= 10 else f"{width}:{height}"
        broken.append(
            RuleViolation("aspect", f"{width}×{height} is {actual}, not the required {spec.aspect}")
        )
    return tuple(broken)


def enlargement_of(spec: OutputSpec, source: tuple[int, int]) -> float:
    """How many times `spec` enlarges a `source`-sized picture (below 1: it shrinks it)."""
    return spec.resized_size(source)[0] / source[0]


def not_made_reason(spec: OutputSpec, source: tuple[int, int]) -> str | None:
    """Why `spec` is not made from a `source`-sized picture (enlarged past MAX_ENLARGEMENT_MADE), in the
    marketer's words with the photo size it needs; None when it is made."""
    enlargement = enlargement_of(spec, source)
    if enlargement <= MAX_ENLARGEMENT_MADE:
        return None
    width, height = spec.resized_size(source)
    shown = (min(spec.width, width), min(spec.height, height))
    has = (max(1, round(shown[0] / enlargement)), max(1, round(shown[1] / enlargement)))
    needs = tuple(math.ceil(side * enlargement / MAX_ENLARGEMENT_MADE) for side in source)
    return (
        f"{spec.name} {spec.width}×{spec.height} not made: it would show {has[0]}×{has[1]} pixels of the "
        f"photo enlarged {enlargement:.1f}×, a blur (it needs a photo of at least {needs[0]}×{needs[1]}, "
        "or an Upscale step in the recipe)"
    )


def read_encoder_options(name: str, fmt: str, data: Mapping[str, object]) -> dict[str, Any]:
    """The encoder options of one output, defaults filled; empty (None) means the default.

    An option set away from its default on a format it does not apply to is refused, so a recipe
    never claims a setting that has no effect.
    """
    options: dict[str, Any] = {}
    for key, default in ENCODER_DEFAULTS.items():
        value = data.get(key)
        if value is None:
            value = default
        if key == "progressive":
            if not isinstance(value, bool):
                raise OutputSpecError(f"output {name}: 'progressive' must be true or false")
        else:
            allowed = WEBP_METHODS if key == "webp_method" else AVIF_SPEEDS
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise OutputSpecError(
                    f"output {name}: '{key}' must be a whole number from {allowed[0]} to {allowed[-1]}, or empty"
                )
        if value != default and fmt != ENCODER_FORMATS[key]:
            raise OutputSpecError(f"output {name}: '{key}' applies to {ENCODER_FORMATS[key].upper()} only")
        options[key] = value
    return options

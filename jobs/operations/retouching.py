"""The steps a provider can also do: remove the background, enhance, upscale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

from jobs.errors import PermanentError
from jobs.operations.base import KEPT_WHOLE, Operation, OperationContext
from jobs.operations.compositing import carry_hints, join_alpha, split_alpha
from jobs.operations.params import ParamReader

# Upscaling and canvases must not create images no later step could afford to hold.
MAX_RESULT_PIXELS = 100_000_000

# Enhance's colour corrections are bounded so an opt-in correction can tint a photo but never recolour it.
WHITE_BALANCE_GAINS = (0.9, 1.11)
MAX_ENHANCE_SHIFT = 10

# Refusals that mean "this photo does not suit a cut-out", which if_unsuitable="keep" turns into
# keeping the photo whole; anything else (an undecodable file, a provider outage) still fails.
UNSUITABLE_CODES = frozenset({"no_plain_background", "no_subject", "unusable_cutout"})


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
        # numpy and OpenCV are loaded by the first step that needs them, not by every worker.
        from jobs.operations.cutout import already_cut_out, background_alpha, check_cutout

        if already_cut_out(image):
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
        from jobs.operations.cutout import check_cutout

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
        rgb, alpha = split_alpha(image)
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
        return carry_hints(image, join_alpha(rgb, alpha))


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
        rgb, alpha = split_alpha(image.resize(size, Image.Resampling.LANCZOS))
        # Lanczos leaves edges soft at this magnification; a small-radius mask restores crispness.
        rgb = rgb.filter(ImageFilter.UnsharpMask(radius=0.5 * self.factor, percent=50, threshold=2))
        return carry_hints(image, join_alpha(rgb, alpha))

    def source_scale(self) -> float | None:
        return 1 / self.factor


def _balance_white(rgb: Image.Image, visible: Image.Image | None) -> Image.Image:
    """Grey-world white balance over near-neutral pixels, gains clamped to WHITE_BALANCE_GAINS.

    Averaging only low-saturation pixels estimates the light's cast without letting a big blue
    product drag the whole picture towards orange; with too few of them we leave colours alone.
    """
    import numpy as np

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
    import numpy as np

    before = np.array(ImageStat.Stat(original, visible).mean)
    after = np.array(ImageStat.Stat(corrected, visible).mean)
    shift = np.abs(after - before).max()
    if shift <= limit:
        return corrected
    # A level of slack: the blend truncates every pixel.
    return Image.blend(original, corrected, (limit - 1) / shift)

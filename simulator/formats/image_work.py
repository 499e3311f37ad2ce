"""Image work the formats share: cut-outs by our own operations, pixel budgets, crops and encoding."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from jobs.operations import OperationContext, build_operation
from simulator.files import CONTENT_TYPES


def cut_out(image: Image.Image, feather: float | None = None, *, cheap: bool = False) -> Image.Image:
    """The subject on transparency, by our own remove_background; `cheap`: whatever is not near-white."""
    if cheap:
        cutout = image.convert("RGBA")
        cutout.putalpha(image.convert("L").point(lambda value: 0 if value > 235 else 255))
        return cutout
    params = {} if feather is None else {"feather": feather}
    return (
        build_operation("remove_background", params).apply(image, OperationContext.default()).convert("RGBA")
    )


def fit_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def crop_to_subject(image: Image.Image) -> Image.Image:
    box = image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    return image.crop(box) if box else image


def encode(
    image: Image.Image, file_format: str, background: tuple[int, int, int] | None = None
) -> tuple[bytes, str]:
    """Bytes and content type: png (RGBA, or the mask itself for "L"), jpg or webp; flattened over `background`."""
    buffer = io.BytesIO()
    if image.mode == "L":
        image.save(buffer, "PNG", compress_level=3)
        return buffer.getvalue(), CONTENT_TYPES["png"]
    rgba = image.convert("RGBA")
    if background is not None or file_format == "jpg":
        backdrop = Image.new("RGBA", rgba.size, (*(background or (255, 255, 255)), 255))
        rgba = Image.alpha_composite(backdrop, rgba)
    if file_format == "jpg":
        rgba.convert("RGB").save(buffer, "JPEG", quality=90)
    elif file_format == "webp":
        rgba.save(buffer, "WEBP", quality=90)
    else:
        file_format = "png"
        rgba.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue(), CONTENT_TYPES[file_format]


def uncertainty(alpha: Image.Image) -> float:
    """Share of pixels the mask is unsure about (neither fully kept nor fully removed)."""
    values = np.asarray(alpha)
    return round(float(np.mean((values > 0) & (values < 255))), 4)

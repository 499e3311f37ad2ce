"""Compositing helpers shared by the operations: alpha split and join, focus hints carried or moved, stamping layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

from jobs.imaging import EXTENT_KEY, FOCUS_KEY, SUBJECT_KEY, WHOLE_SOURCE, ImageInfoDict


def split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """The picture as "RGB", and its alpha channel when it has one, so colour work leaves alpha alone."""
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    return (image if image.mode == "RGB" else image.convert("RGB")), None


def join_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """`rgb` with `alpha` put back (the inverse of split_alpha)."""
    if alpha is None:
        return rgb
    result = rgb.convert("RGBA")
    result.putalpha(alpha)
    return result


def carry_hints(source: Image.Image, result: Image.Image) -> Image.Image:
    """Give `result` (same geometry as `source`, at any scale) the source's hints and nothing else."""
    result.info = {
        key: source.info[key] for key in (FOCUS_KEY, SUBJECT_KEY, EXTENT_KEY) if key in source.info
    }
    return result


def move_hints(
    info: Mapping[str | tuple[int, int], Any],
    size: tuple[int, int],
    crop: tuple[int, int, int, int],
    scale: float,
    offset: tuple[int, int],
    new_size: tuple[int, int],
) -> ImageInfoDict:
    """Hints re-expressed after cropping `crop`, scaling by `scale` and pasting at `offset` on a canvas of
    `new_size`: the focus and subject as fractions of the new picture, its extent in the source."""

    def move(x: float, y: float) -> tuple[float, float]:
        px = (x * size[0] - crop[0]) * scale + offset[0]
        py = (y * size[1] - crop[1]) * scale + offset[1]
        return min(max(px / new_size[0], 0.0), 1.0), min(max(py / new_size[1], 0.0), 1.0)

    hints: ImageInfoDict = {}
    focus = info.get(FOCUS_KEY)
    if isinstance(focus, tuple) and len(focus) == 2:
        hints[FOCUS_KEY] = move(*focus)
    subject = info.get(SUBJECT_KEY)
    if isinstance(subject, tuple) and len(subject) == 4:
        hints[SUBJECT_KEY] = (*move(subject[0], subject[1]), *move(subject[2], subject[3]))
    hints[EXTENT_KEY] = moved_extent(info.get(EXTENT_KEY, WHOLE_SOURCE), size, crop, scale, offset, new_size)
    return hints


def moved_extent(
    extent: tuple[float, float, float, float],
    size: tuple[int, int],
    crop: tuple[int, int, int, int],
    scale: float,
    offset: tuple[int, int],
    new_size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """Where the new picture's corners lie in the source, given where the old one's (`extent`) did."""
    left, top, right, bottom = extent

    def in_source(x: float, y: float) -> tuple[float, float]:
        # Back from a pixel of the new picture to one of the old, then along the old picture's extent.
        old_x = (x - offset[0]) / scale + crop[0]
        old_y = (y - offset[1]) / scale + crop[1]
        return left + old_x / size[0] * (right - left), top + old_y / size[1] * (bottom - top)

    return (*in_source(0, 0), *in_source(*new_size))


def anchor(position: str, canvas: tuple[int, int], item: tuple[int, int], margin: int) -> tuple[int, int]:
    """Top-left corner that puts `item` at `position` ("top-left", "center", "bottom", ...)."""
    horizontal = {"left": margin, "right": canvas[0] - item[0] - margin}
    vertical = {"top": margin, "bottom": canvas[1] - item[1] - margin}
    centre = ((canvas[0] - item[0]) // 2, (canvas[1] - item[1]) // 2)
    parts = position.split("-")
    x = next((horizontal[p] for p in parts if p in horizontal), centre[0])
    y = next((vertical[p] for p in parts if p in vertical), centre[1])
    return x, y


def stamp(image: Image.Image, layer: Image.Image, position: tuple[int, int]) -> Image.Image:
    """`image` with the RGBA `layer` composited at `position`, in the image's own mode."""
    if image.mode == "RGBA":
        result = image.copy()
        result.alpha_composite(layer, position)
        return result
    result = image.convert("RGB") if image.mode != "RGB" else image.copy()
    result.paste(layer, position, layer)
    return result

"""Resampling Pillow images with fast_image_resize (cykooz-resizer): SIMD convolution on Pillow's own pixels."""

from __future__ import annotations

import math

from cykooz_resizer import CropBox, FilterType, ResizeAlg, ResizeOptions, Resizer
from cykooz_resizer.alpha import AlphaMulDiv
from PIL import Image

# The filters Pixelmill uses: Lanczos-3 (the same kernel as Pillow's LANCZOS) for every picture that
# is shipped, a box filter for the cascade's cheap half-size levels (see jobs.rendering).
LANCZOS = ResizeAlg.convolution(FilterType.lanczos3)
BOX = ResizeAlg.convolution(FilterType.box)
# What the resizer works on without converting: decode_image and every step yield RGB or RGBA.
MODES = ("RGB", "RGBA")
# Most memory one resize may take beyond its source and result (see resample).
BAND_BYTES = 4 * 1024 * 1024
# How far each filter reads beside the box, in source pixels per output pixel (Lanczos-3: 3 lobes;
# every other filter the resizer has reaches less).
LANCZOS_SUPPORT = 3.0


def resample(
    image: Image.Image,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
    *,
    algorithm: ResizeAlg = LANCZOS,
) -> Image.Image:
    """`image`, or the region `box` of it (left, top, right, bottom; fractional pixel edges, as in
    Pillow's `resize`), resampled to `size`.

    RGB pixels are read and written in place, in Pillow's buffers: no copy of the source. RGBA is
    resampled with premultiplied alpha, as Pillow does, so transparent pixels never bleed colour; the
    region the filter reads is copied once for that.
    """
    if image.mode not in MODES:
        raise ValueError(f"cannot resample a {image.mode} image; convert it to RGB or RGBA first")
    # Float arithmetic may put an edge a hair outside the picture; the resizer refuses that.
    left, top, right, bottom = box or (0.0, 0.0, image.width, image.height)
    left, top = max(0.0, left), max(0.0, top)
    right, bottom = min(float(image.width), right), min(float(image.height), bottom)
    if image.mode == "RGBA":
        return _resample_premultiplied(image, size, (left, top, right, bottom), algorithm)
    return _resample_banded(image, size, (left, top, right, bottom), algorithm)


def _resample_premultiplied(
    image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float], algorithm: ResizeAlg
) -> Image.Image:
    """RGBA through premultiplied alpha, multiplied once over just the pixels the filter reaches.

    Handed RGBA, the resizer premultiplies the whole source again on every call: for a 12 MP cut-out
    that was 35 ms a call, and a banded resize makes a call per band (an RGBA story window took 135 ms
    where RGB takes 21 ms). The region keeps every pixel the filter reads and meets the picture's own
    edges where the box does, so the result is the same.
    """
    left, top, right, bottom = box
    reach_x = LANCZOS_SUPPORT * max(1.0, (right - left) / size[0]) + 1
    reach_y = LANCZOS_SUPPORT * max(1.0, (bottom - top) / size[1]) + 1
    x0, y0 = max(0, math.floor(left - reach_x)), max(0, math.floor(top - reach_y))
    x1 = min(image.width, math.ceil(right + reach_x))
    y1 = min(image.height, math.ceil(bottom + reach_y))
    region = image.crop((x0, y0, x1, y1))
    _ALPHA.multiply_alpha_pil_inplace(region)
    result = _resample_banded(region, size, (left - x0, top - y0, right - x0, bottom - y0), algorithm)
    _ALPHA.divide_alpha_pil_inplace(result)
    return result


def _resample_banded(
    image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float], algorithm: ResizeAlg
) -> Image.Image:
    left, top, right, bottom = box
    width, height = size
    # The resizer filters along rows into an intermediate of output width × source rows, then along
    # columns: 17 MB on top of source and result for a 24 MP decode's 2000 px zoom. In bands of output
    # rows, each filtered with the source rows around it (the bands join exactly), it stays small.
    rows_per_band = max(1, int(BAND_BYTES / (4 * width * max(1.0, (bottom - top) / height))))
    if rows_per_band >= height:
        return _resample(image, size, (left, top, right, bottom), algorithm)
    result = Image.new(image.mode, size, None)  # uninitialised: every pixel is written
    scale = (bottom - top) / height
    starts = range(0, height, rows_per_band)
    # The last band ends at `bottom` itself: top + height * scale may round a hair past it, and past
    # the picture's edge when the box reaches it (2560×1340 to 1200×628 gave 1340.0000000000002).
    edges = [top + y * scale for y in starts] + [bottom]
    for index, y in enumerate(starts):
        end = min(height, y + rows_per_band)
        band = _resample(image, (width, end - y), (left, edges[index], right, edges[index + 1]), algorithm)
        result.paste(band, (0, y))
    return result


def _resample(
    image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float], algorithm: ResizeAlg
) -> Image.Image:
    result = Image.new(image.mode, size, None)
    left, top, right, bottom = box
    # The resizer checks left + width against the picture's size, in floats: right - left is rounded,
    # so that sum can come out one unit past `right` (1 box in 75 with fractional edges), which at the
    # picture's edge it refuses. Shave that unit instead.
    width = _span_within(left, right - left, image.width)
    height = _span_within(top, bottom - top, image.height)
    options = ResizeOptions(resize_alg=algorithm, crop_box=CropBox(left, top, width, height))
    # A resizer per call: it keeps its intermediate buffer for reuse, which a worker would then hold
    # for good; making one is free. No thread pool: the resize runs on the calling thread, a worker
    # is one core's worth of work.
    Resizer().resize_pil(image, result, options)
    return result


# Stateless apart from the CPU extensions it detected once.
_ALPHA = AlphaMulDiv()


def _span_within(start: float, span: float, limit: int) -> float:
    """`span`, lowered by the least amount that keeps start + span within `limit`."""
    while span > 0 and start + span > limit:
        span = math.nextafter(span, 0.0)
    return span


def halve(image: Image.Image) -> Image.Image:
    """`image` at half its size (rounded) through a box filter: each pixel the mean of the 2×2 it covers.

    Cheap (it reads every source pixel once, about 9 ms for 12 MP on one core) and, as a step that a
    Lanczos resize then finishes, close enough to Lanczos all the way (see jobs.rendering).
    """
    size = (max(1, round(image.width / 2)), max(1, round(image.height / 2)))
    return resample(image, size, algorithm=BOX)

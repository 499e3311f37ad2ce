"""Decoding untrusted image bytes into one normalised sRGB Pillow image, and small image helpers."""

from __future__ import annotations

import functools
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image, ImageCms, ImageFile, PngImagePlugin, UnidentifiedImageError

from jobs.errors import PermanentError

DEFAULT_MAX_PIXELS = 100_000_000

# Formats we agree to parse. Pillow can open many more (EPS would start Ghostscript, FITS, PSD,
# ...); an upload dashboard has no use for them and each parser is attack surface. Multi-picture
# JPEGs (MPO, from phones) come in through the JPEG opener.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF")

# Keys of `Image.info` that carry our own geometry hints between steps (see jobs.operations).
FOCUS_KEY = "pixelmill.focus"
SUBJECT_KEY = "pixelmill.subject"
# Where the picture's edges lie in the decoded source, normalised (left, top, right, bottom); absent means
# the whole source, and a canvas's margin reaches past 0..1. Lets an output say which part of the source it shows.
EXTENT_KEY = "pixelmill.extent"
WHOLE_SOURCE = (0.0, 0.0, 1.0, 1.0)
# Pillow's type for `Image.info`: hints are built as this so they can be assigned to it.
ImageInfoDict = dict[str | tuple[int, int], Any]

_ORIENTATION_TAG = 0x0112
_TRANSPOSE_BY_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations 5-8 store the picture on its side: stored width is displayed height.
_AXES_SWAPPED = frozenset({5, 6, 7, 8})

# Which embedded profile colour spaces we can convert, and from which Pillow modes.
_PROFILE_MODES = {"RGB": ("RGB",), "CMYK": ("CMYK",), "GRAY": ("L",)}


@dataclass(frozen=True)
class ImageInfo:
    """What an upload is, as displayed: oriented width and height, container format, stored mode."""

    width: int
    height: int
    format: str
    mode: str


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode `data` into an sRGB "RGB" or "RGBA" image, upright, with no metadata left in `info`.

    Policy, in the order applied:

    - Unreadable, truncated or corrupt input raises `PermanentError(code="unreadable")`; an image
      over `max_pixels` raises `PermanentError(code="too_large")` before any pixel is decoded.
    - Animated images (GIF, APNG, animated WebP) and multi-picture JPEGs yield their first frame.
    - `min_size` (displayed width, height) lets a JPEG decode at the smallest DCT scale (1/2, 1/4,
      1/8) that is still at least that large in both dimensions; other formats ignore it.
    - 16-bit and 32-bit greyscale is rescaled to 8 bits over its real range, never clipped.
    - An embedded ICC profile is converted to sRGB; a profile lcms cannot parse is ignored.
    - CMYK becomes RGB (through its profile when it has one); greyscale and bilevel become RGB
      so every later step sees three colour channels; anything with transparency becomes RGBA,
      and an alpha channel that is fully opaque is dropped.
    - EXIF orientation is applied.
    """
    image = _open(data, max_pixels)
    return _decode(image, _orientation(image), min_size)


def decode_keeping_profile(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, bytes | None]:
    """`decode_image`, except that an RGB or RGBA picture with an RGB profile other than sRGB stays in
    its own colours: returned with that profile, for `to_srgb` once it has been resized.

    Converting a 4 MP Adobe RGB photo took a quarter of its render (lcms over every pixel) and held a
    second full-size copy; converting each output instead costs a fraction of that. Only for pixels
    that nothing reads the colours of before then (the renderer with no steps). The profile is None
    when the picture is sRGB already (or was converted here: CMYK, greyscale, Lab).
    """
    image = _open(data, max_pixels)
    return _decode_keeping_profile(image, _orientation(image), min_size, defer_colour=True)


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """An RGB or RGBA `image` in the colours of profile `icc` converted to sRGB (alpha kept); with no
    profile, or one lcms cannot use, `image` itself."""
    if icc is None:
        return image
    return _to_srgb(image, icc)


def _decode(image: ImageFile.ImageFile, orientation: int, min_size: tuple[int, int] | None) -> Image.Image:
    return _decode_keeping_profile(image, orientation, min_size, defer_colour=False)[0]


def _decode_keeping_profile(
    image: ImageFile.ImageFile, orientation: int, min_size: tuple[int, int] | None, *, defer_colour: bool
) -> tuple[Image.Image, bytes | None]:
    if min_size is not None and image.format in ("JPEG", "MPO"):
        width, height = min_size
        if orientation in _AXES_SWAPPED:
            width, height = height, width
        # JPEG's draft picks the largest reduction that keeps both sides >= the request.
        image.draft("RGB", (max(1, width), max(1, height)))
    _load(image)
    hints = _read_hints(image)
    result, profile = _normalise(image, orientation, defer_colour=defer_colour)
    result.info = hints
    return result, profile


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate an upload cheaply: read its header, and prove the whole file decodes.

    JPEGs are decoded at 1/8 scale, which still entropy-decodes every byte, so a truncated file
    is refused exactly as `decode_image` would refuse it. Raises like `decode_image`.
    """
    image = _open(data, max_pixels)
    info = _describe(image)
    if info.format == "JPEG":
        image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
    _load(image)
    return info


def probe_with_thumbnail(
    data: bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS, size: int = 320
) -> tuple[ImageInfo, bytes]:
    """`probe_image` and `make_thumbnail(decode_image(...))` from a single decode, of bytes or of a
    seekable file.

    The thumbnail's draft decode (1/8 or 1/4 of a large JPEG) entropy-decodes every byte too, so
    it proves the file whole exactly as the probe does; an upload is decoded once, not twice.
    """
    image = _open(data, max_pixels)
    info = _describe(image)
    orientation = _orientation(image)
    return info, make_thumbnail(_decode(image, orientation, (size, size)), size)


def decode_pixels(data: bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS, size: int = 320) -> int:
    """How many pixels `probe_with_thumbnail` (for a `size` thumbnail) holds at once to prove this image
    whole, read from its header alone: a baseline JPEG at its draft scale (1/8 of a large photo), anything
    else in full. A progressive JPEG counts in full too: libjpeg keeps every coefficient of the picture until
    its last scan, whatever the scale (300 MB for 100 MP).

    Raises like `decode_image` for a file that is not an image we accept or is over `max_pixels`.
    """
    image = _open(data, max_pixels)
    if image.format in ("JPEG", "MPO") and not image.info.get("progressive"):
        image.draft("RGB", (size, size))  # only picks the scale, as the thumbnail's decode will
    width, height = image.size  # stored, not oriented: a PNG's EXIF may follow its pixels (getexif decodes)
    return width * height


def _describe(image: ImageFile.ImageFile) -> ImageInfo:
    width, height = image.size
    if _orientation(image) in _AXES_SWAPPED:
        width, height = height, width
    file_format = "JPEG" if image.format == "MPO" else str(image.format)
    return ImageInfo(width=width, height=height, format=file_format, mode=image.mode)


def read_dimensions(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Displayed (width, height) from the header alone, without decoding pixels."""
    image = _open(data, max_pixels)
    width, height = image.size
    if _orientation(image) in _AXES_SWAPPED:
        return height, width
    return width, height


def make_thumbnail(image: Image.Image, size: int = 320) -> bytes:
    """WebP (quality 80) of `image` fitted inside size×size, alpha kept, never enlarged."""
    scale = min(size / image.width, size / image.height, 1.0)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    thumb = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if thumb.has_transparency_data else "RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, "WEBP", quality=80, method=4)
    return buffer.getvalue()


def encode_intermediate(image: Image.Image) -> bytes:
    """Lossless PNG of a step's result that keeps the focus hints, for the step cache.

    `decode_image` reads the hints back, so a cached `smart_crop` result still steers `fill`.
    """
    text = PngImagePlugin.PngInfo()
    for key in (FOCUS_KEY, SUBJECT_KEY):
        if key in image.info:
            text.add_text(key, json.dumps(list(image.info[key])))
    buffer = io.BytesIO()
    # Level 1: intermediates are written once and read once; speed beats size here.
    image.save(buffer, "PNG", compress_level=1, pnginfo=text)
    return buffer.getvalue()


def place_window(
    length: int,
    window: int,
    focus: float,
    span: tuple[float, float] | None = None,
    *,
    keep_start: bool = False,
) -> int:
    """Start of a `window`-long crop inside `length` pixels around normalised `focus`.

    With `span` (normalised start, end of the subject) the window keeps the whole span when
    it can, and is otherwise centred on the focus; with `keep_start` a span too long for the
    window keeps its start instead (the top of a person is their head), as long as the focus
    stays in the window. The window never leaves the image.
    """
    window = min(window, length)
    # A window that keeps most of the picture leans towards its middle, in step with how much it keeps:
    # photographers frame a subject about the centre, and a detector's box is often only the subject's
    # most salient part (a motorcycle's tank), so a light trim is best taken evenly. A window that keeps
    # half the picture or less centres on the focus (a small kite far off centre).
    lean = min(1.0, max(0.0, 2 * window / length - 1))
    focus += (0.5 - focus) * lean
    centre = focus * length
    start = centre - window / 2
    if span is not None:
        low, high = span[0] * length, span[1] * length
        if high - low <= window:
            # Slide the least distance that brings the whole subject inside.
            start = min(max(start, high - window), low)
        elif keep_start:
            start = max(low, centre - 0.9 * window)
    return int(round(min(max(start, 0.0), length - window)))


def fill_crop(
    size: tuple[int, int], box: tuple[int, int], hints: Mapping[str | tuple[int, int], Any]
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) a `fill` output of `box` size keeps of a picture resized to `size`
    (which covers the box), placed by the focus hints: the subject whole when it fits, else its focus."""
    focus = hints.get(FOCUS_KEY) or (0.5, 0.5)
    subject = hints.get(SUBJECT_KEY)
    x_span = (subject[0], subject[2]) if subject else None
    y_span = (subject[1], subject[3]) if subject else None
    left = place_window(size[0], box[0], float(focus[0]), x_span)
    top = place_window(size[1], box[1], float(focus[1]), y_span, keep_start=True)
    return left, top, left + min(box[0], size[0]), top + min(box[1], size[1])


@functools.cache
def register_heif() -> None:
    """HEIC/HEIF (phone photos) through pillow-heif; its AVIF opener stays off, Pillow has its own.

    Imported on the first file that may be one: libheif and its codecs are 5 MB resident that a
    worker rendering JPEGs would otherwise carry for nothing.
    """
    import pillow_heif

    pillow_heif.register_heif_opener()


def _open(data: bytes | BinaryIO, max_pixels: int) -> ImageFile.ImageFile:
    """The image's header read from bytes, or from a seekable file read where it is (never all at once)."""
    handle = io.BytesIO(data) if isinstance(data, bytes) else data
    handle.seek(0)
    head = handle.read(12)
    handle.seek(0)
    if not head:
        raise PermanentError("The file is empty.", code="unreadable")
    # `formats=` looks plugins up by name, so they must all be registered (idempotent, cheap).
    Image.init()
    # Every HEIF file starts with an ISO media "ftyp" box; anything else is not tried as HEIF.
    formats: tuple[str, ...] = ACCEPTED_FORMATS
    if head[4:8] == b"ftyp":
        register_heif()
    else:
        formats = tuple(name for name in ACCEPTED_FORMATS if name != "HEIF")
    try:
        with warnings.catch_warnings():
            # We apply our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle, formats=formats)
    except Image.DecompressionBombError as exc:
        raise PermanentError("The image has too many pixels to process safely.", code="too_large") from exc
    except UnidentifiedImageError as exc:
        raise PermanentError(
            "This is not an image we can read (accepted: JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF, HEIC).",
            code="unreadable",
        ) from exc
    except Exception as exc:
        # Plugin header parsers raise assorted types (SyntaxError, struct.error, IndexError...)
        # on malformed input; to the user they all mean the same thing.
        raise PermanentError("The file is truncated or corrupt.", code="unreadable") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise PermanentError("The file is truncated or corrupt.", code="unreadable")
    if width * height > max_pixels:
        raise PermanentError(
            f"The image is {width}×{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels.",
            code="too_large",
        )
    return image


def _load(image: ImageFile.ImageFile) -> None:
    # ImageFile.LOAD_TRUNCATED_IMAGES must stay False: with it Pillow pads a truncated file
    # with grey and we would publish half a photo.
    try:
        image.load()
    except Exception as exc:
        raise PermanentError("The file is truncated or corrupt.", code="unreadable") from exc


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        # A malformed EXIF block must not make a good picture unreadable.
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE_BY_ORIENTATION else 1


def _read_hints(image: Image.Image) -> ImageInfoDict:
    hints: ImageInfoDict = {}
    for key, length in ((FOCUS_KEY, 2), (SUBJECT_KEY, 4)):
        raw = image.info.get(key)
        if not isinstance(raw, str):
            continue
        try:
            values = tuple(float(v) for v in json.loads(raw))
        except (ValueError, TypeError):
            continue
        if len(values) == length and all(0.0 <= v <= 1.0 for v in values):
            hints[key] = values
    return hints


def _normalise(
    image: Image.Image, orientation: int, *, defer_colour: bool = False
) -> tuple[Image.Image, bytes | None]:
    source = image
    icc = image.info.get("icc_profile")
    deferred: bytes | None = None
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif image.mode == "LAB":
        converted = ImageCms.applyTransform(image, _lab_to_srgb())
        assert converted is not None  # None only when asked to work in place
        image = converted

    if icc and defer_colour and image.mode in ("RGB", "RGBA") and _converts(icc, "RGB"):
        deferred = icc
    elif icc:
        image = _to_srgb(image, icc)

    if image.mode in ("LA", "La", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")

    method = _TRANSPOSE_BY_ORIENTATION.get(orientation)
    if method is not None:
        image = image.transpose(method)
    if image is source:
        # Never hand out the file object itself: it still answers getexif() with the original
        # orientation, and a later exif_transpose would rotate the picture twice. A new Image
        # over the same pixels does that without copying them (18 MB for a 24 MP JPEG at 1/2).
        image = image._new(image.im)
        image.info = {}
    return image, deferred


def _to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips 16-bit values at 255, which turns most photos white.
    import numpy as np  # here: a worker rendering 8-bit JPEGs need not carry it

    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(scaled.astype(np.uint8))
    low, high = float(values.min()), float(values.max())
    if image.mode == "I" and low >= 0 and high <= 255:
        return Image.fromarray(values.astype(np.uint8))
    if image.mode == "I" and low >= 0 and high <= 65535:
        return Image.fromarray(((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))
    if image.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    # Anything else has no agreed white point: stretch its actual range.
    span = high - low or 1.0
    stretched = (values.astype(np.float64) - low) * (255.0 / span)
    return Image.fromarray(np.clip(np.rint(stretched), 0, 255).astype(np.uint8))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    alpha = None
    colour = image
    if image.mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        colour = image.convert(image.mode[:-1])
    try:
        transform = _transform_to_srgb(icc, colour.mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        transform = None
    if transform is None:
        return image
    try:
        converted = ImageCms.applyTransform(colour, transform)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    assert converted is not None
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _converts(icc: bytes, mode: str) -> bool:
    """Whether `_to_srgb` would change pixels of `mode` tagged with `icc`."""
    try:
        return _transform_to_srgb(icc, mode) is not None
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return False


@functools.lru_cache(maxsize=32)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Build (and cache: a batch shares one camera's profile) the transform, or None to skip it."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    space = profile.profile.xcolor_space.strip()
    if mode not in _PROFILE_MODES.get(space, ()):
        # A profile that does not describe these pixels (an RGB profile on a CMYK file) is wrong.
        return None
    description = ImageCms.getProfileDescription(profile) or ""
    if space == "RGB" and "srgb" in description.lower():
        # Already sRGB: converting would cost a pass over every pixel for no visible change.
        return None
    return ImageCms.buildTransform(
        profile, _srgb_profile(), mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
    )


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.cache
def _lab_to_srgb() -> ImageCms.ImageCmsTransform:
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    return ImageCms.buildTransform(lab, _srgb_profile(), "LAB", "RGB")

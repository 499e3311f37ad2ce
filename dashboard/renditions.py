"""Browser-ready copies of stored images (output thumbnails, viewable sources), made on first request and kept."""

from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from dashboard.models import Output, SourceImage
from dashboard.storage import read_bytes
from jobs.imaging import decode_image, make_thumbnail

OUTPUT_THUMBNAIL_SIDE = 480
# The gallery shows outputs about 60 px wide: 160 px stays sharp on a high-density screen at a tenth the bytes.
GALLERY_THUMBNAIL_SIDE = 160
# Browsers cannot show TIFF or HEIC; those sources are shown through a WebP copy this large.
SOURCE_DISPLAY_SIDE = 4000
BROWSER_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF", "BMP"}


def rendition_of(original: str, key: str, max_side: int) -> str:
    """The storage key of a WebP copy of `original` fitted inside max_side², made if missing."""
    if default_storage.exists(key):
        return key
    data = read_bytes(original)
    image = decode_image(data, max_pixels=settings.PIXELMILL_MAX_PIXELS, min_size=(max_side, max_side))
    saved = default_storage.save(key, ContentFile(make_thumbnail(image, max_side)))
    if saved != key:
        # Another request made it at the same moment; storage kept both under different names.
        default_storage.delete(saved)
    return key


def output_thumbnail(output: Output) -> str:
    return rendition_of(output.file.name, output.thumbnail_key(), OUTPUT_THUMBNAIL_SIDE)


def output_gallery_thumbnail(output: Output) -> str:
    return rendition_of(
        output.file.name, output.thumbnail_key(GALLERY_THUMBNAIL_SIDE), GALLERY_THUMBNAIL_SIDE
    )


def viewable_source(source: SourceImage) -> str:
    """The original when a browser can show it, else a large WebP copy of it."""
    if source.format.upper() in BROWSER_FORMATS:
        return source.file.name
    stem = PurePosixPath(source.file.name).with_suffix("")
    return rendition_of(source.file.name, f"{stem}.display.webp", SOURCE_DISPLAY_SIDE)

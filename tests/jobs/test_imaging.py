"""Decoding untrusted bytes: refusals with reasons, orientation, colour management, bit depth, alpha."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jobs.errors import PermanentError
from jobs.imaging import decode_image, make_thumbnail, probe_image, read_dimensions
from tests.jobs import images


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "unreadable"),
        (b"<html><script>alert(1)</script></html>", "unreadable"),
        (b"%PDF-1.7 not an image", "unreadable"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "unreadable"),
        (images.truncated(images.jpeg(images.photo(120, 90))), "unreadable"),
        (images.truncated(images.png(images.photo(120, 90))), "unreadable"),
        (images.png_header_only(65_535, 65_535), "too_large"),
    ],
    ids=["empty", "html", "pdf", "svg", "truncated-jpeg", "truncated-png", "decompression-bomb"],
)
def test_unusable_input_is_refused_with_a_code_and_a_message(data, code):
    for decode in (decode_image, probe_image):
        with pytest.raises(PermanentError) as error:
            decode(data)
        assert error.value.code == code
        assert error.value.message


def test_pixel_cap_is_checked_before_decoding():
    data = images.png(images.photo(200, 100))
    with pytest.raises(PermanentError) as error:
        probe_image(data, max_pixels=10_000)
    assert error.value.code == "too_large"


def test_exif_orientation_is_applied():
    data = images.exif_rotated_jpeg(images.quadrants(200, 100), orientation=6)
    image = decode_image(data)
    assert image.size == (100, 200)
    assert read_dimensions(data) == (100, 200)
    assert probe_image(data).width == 100
    # Stored top-left (red) ends up top-right after a 90° clockwise turn.
    r, g, b = image.getpixel((90, 10))
    assert r > 200 and g < 60 and b < 60


def test_cmyk_becomes_rgb_with_the_right_colours():
    data = images.cmyk_jpeg(images.quadrants(80, 80))
    image = decode_image(data)
    assert image.mode == "RGB"
    r, g, b = image.getpixel((10, 10))
    assert r > 180 and g < 90 and b < 90


def test_sixteen_bit_is_scaled_not_clipped():
    image = decode_image(images.png_16bit(256, 64))
    values = np.asarray(image.convert("L"))
    assert image.mode == "RGB"
    assert values.min() < 20 and values.max() > 235  # the whole range survives, not a white slab


def test_palette_with_transparency_becomes_rgba():
    image = decode_image(images.palette_png_with_transparency())
    assert image.mode == "RGBA"
    alpha = np.asarray(image.getchannel("A"))
    assert alpha.min() == 0 and alpha.max() == 255


def test_animated_gif_gives_its_first_frame():
    image = decode_image(images.animated_gif())
    assert image.getpixel((5, 5))[:3] == (255, 0, 0)


def test_icc_profile_is_converted_to_srgb_and_stripped():
    swapped = images.swapped_channels_profile()
    image = decode_image(images.jpeg_with_icc(Image.new("RGB", (32, 32), (200, 30, 30)), swapped))
    r, g, b = image.getpixel((16, 16))
    assert not (r > 150 and g < 80)  # the profile said those channels mean something else
    assert "icc_profile" not in image.info and "exif" not in image.info


def test_draft_decodes_a_jpeg_smaller_but_never_below_the_request():
    data = images.jpeg(images.photo(1600, 1200))
    image = decode_image(data, min_size=(300, 200))
    assert image.size == (400, 300)  # 1/4 scale: 1/8 would be 200×150, too small


def test_thumbnail_is_webp_within_the_box():
    thumb = Image.open(io.BytesIO(make_thumbnail(images.photo(640, 480), 320)))
    assert thumb.format == "WEBP" and thumb.size == (320, 240)

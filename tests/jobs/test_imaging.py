"""Decoding untrusted bytes: refusals with reasons, orientation, colour management, bit depth, alpha."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from jobs.errors import PermanentError
from jobs.imaging import (
    FOCUS_KEY,
    SUBJECT_KEY,
    decode_image,
    decode_keeping_profile,
    encode_intermediate,
    make_thumbnail,
    probe_image,
    read_dimensions,
    to_srgb,
)
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


def test_keeping_the_profile_hands_back_the_stored_colours_and_to_srgb_converts_them_as_decoding_does():
    wide = images.adobe_rgb_profile()
    data = images.jpeg_with_icc(Image.new("RGB", (32, 32), (40, 160, 60)), wide)
    kept, profile = decode_keeping_profile(data)
    assert profile == wide and "icc_profile" not in kept.info
    assert kept.getpixel((16, 16)) == Image.open(io.BytesIO(data)).convert("RGB").getpixel((16, 16))
    assert to_srgb(kept, profile).getpixel((16, 16)) == decode_image(data).getpixel((16, 16))


def test_keeping_the_profile_still_converts_what_is_not_rgb_and_leaves_srgb_alone():
    cmyk, cmyk_profile = decode_keeping_profile(images.cmyk_jpeg(Image.new("RGB", (16, 16), (200, 30, 30))))
    assert cmyk.mode == "RGB" and cmyk_profile is None
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    _, srgb_profile = decode_keeping_profile(images.jpeg_with_icc(images.photo(32, 24), srgb))
    assert srgb_profile is None
    _, broken = decode_keeping_profile(images.jpeg_with_icc(images.photo(32, 24), b"not a profile" * 16))
    assert broken is None


def test_draft_decodes_a_jpeg_smaller_but_never_below_the_request():
    data = images.jpeg(images.photo(1600, 1200))
    image = decode_image(data, min_size=(300, 200))
    assert image.size == (400, 300)  # 1/4 scale: 1/8 would be 200×150, too small


def test_thumbnail_is_webp_within_the_box():
    thumb = Image.open(io.BytesIO(make_thumbnail(images.photo(640, 480), 320)))
    assert thumb.format == "WEBP" and thumb.size == (320, 240)


def test_draft_request_is_turned_with_the_picture_for_sideways_orientations():
    """Orientation 6 stores the picture on its side: the request must be swapped before drafting,
    or the decoded width would come out below what was asked for."""
    data = images.exif_rotated_jpeg(images.photo(1600, 1200), orientation=6)
    image = decode_image(data, min_size=(400, 160))
    # Stored 1600×1200 at 1/2 scale is 800×600; shown upright that is 600×800. Without the swap
    # Pillow would pick 1/4 scale and hand back 300×400, narrower than the 400 requested.
    assert image.size == (600, 800)


def test_draft_is_ignored_for_formats_without_dct_scaling():
    image = decode_image(images.png(images.photo(640, 480)), min_size=(80, 60))
    assert image.size == (640, 480)


def test_a_broken_icc_profile_is_ignored_not_fatal():
    data = images.jpeg_with_icc(
        Image.new("RGB", (16, 16), (200, 30, 30)), b"definitely not an ICC profile" * 8
    )
    r, g, b = decode_image(data).getpixel((8, 8))
    assert r > 180 and g < 60 and b < 60


def test_metadata_is_stripped_and_the_result_is_no_longer_the_file():
    """EXIF/XMP/ICC leave `info`, and re-applying orientation to the result must not turn it again."""
    data = images.exif_rotated_jpeg(images.quadrants(200, 100), orientation=6)
    image = decode_image(data)
    assert image.info == {}
    assert ImageOps.exif_transpose(image).size == (100, 200)
    gps = decode_image(images.jpeg_with_gps(images.photo(64, 48)))
    assert gps.info == {} and not gps.getexif()


def test_grey_with_alpha_becomes_rgba_keeping_the_alpha():
    image = decode_image(images.la_png(120, 80))
    assert image.mode == "RGBA"
    assert image.getpixel((10, 10)) == (90, 90, 90, 255) and image.getpixel((110, 10))[3] == 0


def test_fully_opaque_alpha_is_dropped():
    image = decode_image(images.png(images.photo(40, 30).convert("RGBA")))
    assert image.mode == "RGB"


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_big_endian_and_32_bit_greyscale_tiffs_are_scaled_to_8_bits(mode):
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    pixels = np.tile(ramp, (4, 1))
    if mode == "I;16B":
        source = Image.frombytes("I;16B", (256, 4), pixels.astype(">u2").tobytes())
    else:
        source = Image.fromarray(pixels.astype(np.int32))
    image = decode_image(images.encode(source, "TIFF"))
    row = np.asarray(image.convert("L"))[0]
    assert image.mode == "RGB" and row[0] == 0 and row[-1] == 255
    assert abs(int(row[128]) - 128) <= 1  # mid-grey stays mid-grey: scaled, not clipped or shifted


def test_probe_reports_the_stored_mode_and_the_upright_size():
    info = probe_image(images.cmyk_jpeg(images.photo(120, 90)))
    assert (info.width, info.height, info.format, info.mode) == (120, 90, "JPEG", "CMYK")
    sideways = probe_image(images.exif_rotated_jpeg(images.quadrants(200, 100)))
    assert (sideways.width, sideways.height) == (100, 200)


def test_thumbnail_keeps_transparency_and_never_enlarges():
    thumb = Image.open(io.BytesIO(make_thumbnail(images.product_cutout(160, 120), 320)))
    assert thumb.size == (160, 120) and thumb.mode == "RGBA"
    assert thumb.getpixel((1, 1))[3] == 0


def test_intermediates_keep_the_focus_hints_through_a_cache_round_trip():
    image = images.photo(80, 60)
    image.info = {FOCUS_KEY: (0.25, 0.75), SUBJECT_KEY: (0.1, 0.5, 0.4, 1.0)}
    restored = decode_image(encode_intermediate(image))
    assert restored.info == {FOCUS_KEY: (0.25, 0.75), SUBJECT_KEY: (0.1, 0.5, 0.4, 1.0)}
    assert np.array_equal(np.asarray(restored), np.asarray(image))


def test_probe_with_thumbnail_decodes_an_upload_once(monkeypatch):
    from PIL import ImageFile

    from jobs.imaging import probe_with_thumbnail

    loads = []
    real = ImageFile.ImageFile.load

    def spy(self):
        if self.tile:  # pixels still to decode; later calls return at once
            loads.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    data = images.exif_rotated_jpeg(images.photo(1600, 1200), orientation=6)
    info, thumbnail = probe_with_thumbnail(data)
    assert loads == [(800, 600)]  # one draft decode (1/2: 1/4 would leave 300 < 320), not two
    assert (info.width, info.height, info.format) == (1200, 1600, "JPEG")
    assert Image.open(io.BytesIO(thumbnail)).size == (240, 320)


def test_probe_with_thumbnail_refuses_what_the_probe_refuses():
    from jobs.imaging import probe_with_thumbnail

    with pytest.raises(PermanentError) as error:
        probe_with_thumbnail(images.truncated(images.jpeg(images.photo(800, 600))))
    assert error.value.code == "unreadable"


def test_decode_pixels_counts_a_baseline_jpeg_at_its_draft_scale_and_anything_else_in_full():
    from jobs.imaging import decode_pixels

    def grey(width: int, height: int, **options) -> bytes:
        return images.jpeg(Image.new("RGB", (width, height), (120, 120, 120)), **options)

    assert decode_pixels(grey(4000, 3000)) == 500 * 375  # 1/8, as the thumbnail decodes it
    assert decode_pixels(grey(1600, 1200)) == 800 * 600  # 1/4 would leave 300 < 320
    assert decode_pixels(grey(8000, 300)) == 8000 * 300  # a strip keeps its full scale
    assert decode_pixels(grey(4000, 3000, progressive=True)) == 4000 * 3000
    assert decode_pixels(io.BytesIO(images.png(images.photo(200, 100)))) == 20_000  # read from a file
    with pytest.raises(PermanentError) as error:
        decode_pixels(images.png_header_only(65_535, 65_535))
    assert error.value.code == "too_large"
    with pytest.raises(PermanentError) as error:
        decode_pixels(b"<svg/>")
    assert error.value.code == "unreadable"


def test_probe_with_thumbnail_reads_a_file_where_it_is():
    from jobs.imaging import probe_with_thumbnail

    handle = io.BytesIO(images.png(images.photo(200, 100)))
    handle.seek(50)  # wherever it was left
    info, thumbnail = probe_with_thumbnail(handle)
    assert (info.width, info.height, info.format) == (200, 100, "PNG")
    assert Image.open(io.BytesIO(thumbnail)).size == (200, 100)


def test_pillow_heif_is_loaded_only_for_a_file_that_may_be_heif(tmp_path):
    """libheif is 5 MB resident: a worker that only ever sees JPEGs never loads it, and a HEIC
    upload still decodes in a process that had not loaded it yet."""
    import subprocess
    import sys

    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    images.photo(160, 120).save(buffer, "HEIF", quality=80)
    (tmp_path / "phone.heic").write_bytes(buffer.getvalue())
    (tmp_path / "photo.jpg").write_bytes(images.jpeg(images.photo(160, 120)))
    script = (
        "import sys; from pathlib import Path; from jobs.imaging import decode_image\n"
        "decode_image(Path(sys.argv[1], 'photo.jpg').read_bytes())\n"
        "print('pillow_heif' in sys.modules)\n"
        "print(decode_image(Path(sys.argv[1], 'phone.heic').read_bytes()).size)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split("\n")[:2] == ["False", "(160, 120)"]

"""Hostile and awkward uploads: each is refused with a reason naming it, or accepted and processed to the end."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dashboard.intake import import_uploads
from dashboard.services import process_campaign
from tests.conftest import run_burst_worker
from tests.factories import upload
from tests.jobs import images


def heic(image: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=80)
    return buffer.getvalue()


PHOTO = images.photo(160, 120, seed=21)

# (upload name, bytes, refusal reason fragment or None when the file must be accepted)
CORPUS = [
    ("truncated.jpg", images.truncated(images.jpeg(images.photo(160, 120, seed=1))), "truncated or corrupt"),
    ("empty.jpg", b"", "empty"),
    ("bomb.png", images.png_header_only(65_535, 65_535), "pixels"),
    (
        "script.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "not an image",
    ),
    ("invoice.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "not an image"),
    ("page.png", b"<!doctype html><html><body><script>alert(1)</script></body></html>", "not an image"),
    ("tiny.png", images.png(Image.new("RGB", (1, 1), (9, 9, 9))), None),
    ("cmyk.jpg", images.cmyk_jpeg(images.photo(160, 120, seed=2)), None),
    ("deep.png", images.png_16bit(160, 64), None),
    ("animated.gif", images.animated_gif(), None),
    ("rotated.jpg", images.exif_rotated_jpeg(images.quadrants(200, 100)), None),
    (
        "polyglot.jpg",
        images.jpeg(images.photo(160, 120, seed=3)) + b"<html><script>alert(1)</script></html>",
        None,
    ),
    ("phone.heic", heic(images.photo(160, 120, seed=4)), None),
    ("../../../etc/cron.d/evil.jpg", images.jpeg(images.photo(160, 120, seed=5)), None),
    ("nul\x00byte.jpg", images.jpeg(images.photo(160, 120, seed=6)), "control characters"),
    ("bidi\u202eGPJ.exe.jpg", images.jpeg(images.photo(160, 120, seed=7)), None),
    ("ctrl\x1b[31mred\x07.jpg", images.jpeg(images.photo(160, 120, seed=8)), "control characters"),
    ("名" * 200 + ".jpg", images.jpeg(images.photo(160, 120, seed=9)), None),
]
# How a refused name is shown: control characters as their visible symbols. (A name over 255 characters never
# gets this far: Django's UploadedFile cuts it short, so the request reader refuses it; see test_intake.)
SHOWN = {"nul\x00byte.jpg": "nul␀byte.jpg", "ctrl\x1b[31mred\x07.jpg": "ctrl␛[31mred␇.jpg"}


@pytest.mark.django_db(transaction=True)
def test_each_hostile_input_is_refused_with_its_reason_or_processed(campaign, ready_recipes, redis_conn):
    report = import_uploads(campaign, [upload(name, data) for name, data, _ in CORPUS])
    refused = {r.name: r.reason for r in report.refused}
    for name, _, reason in CORPUS:
        if reason is None:
            continue
        shown = SHOWN.get(name, name)
        assert shown in refused, f"{name} should be refused"
        assert reason in refused[shown], (name, refused[shown])
    accepted = sorted(source.display_name for source in report.accepted)
    assert len(accepted) == sum(1 for *_, reason in CORPUS if reason is None)
    for source in report.accepted:
        # Stored names are ours; the user's name is only shown, cleaned of paths and invisible characters.
        assert source.file.name.startswith(f"sources/c{campaign.pk}/") and source.sha256 in source.file.name
        assert "/" not in source.display_name and "\x00" not in source.display_name
        assert "\u202e" not in source.display_name and "\x1b" not in source.display_name
        assert len(source.display_name) <= 130
    rotated = campaign.sources.get(display_name="rotated.jpg")
    assert (rotated.width, rotated.height) == (100, 200)
    assert campaign.sources.get(display_name="phone.heic").format == "HEIF"

    # The rest of the same upload goes all the way through a worker.
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])
    run_burst_worker()
    states = {
        name: (state, code)
        for name, state, code in campaign.tasks.values_list("source__display_name", "state", "error_code")
    }
    # A picture too small to make even a 300×250 banner from without a blur fails, saying so; the rest succeed.
    too_small = {name: ("failed", "too_small") for name in ("tiny.png", "animated.gif")}
    assert {name: states.pop(name) for name in too_small} == too_small
    assert {state for state, _ in states.values()} == {"succeeded"}, states


def test_an_image_over_the_pixel_cap_is_refused(campaign, settings):
    settings.PIXELMILL_MAX_PIXELS = 10_000
    report = import_uploads(campaign, [upload("big.png", images.png(images.photo(200, 100)))])
    assert "megapixels" in report.refused[0].reason and report.refused[0].name == "big.png"

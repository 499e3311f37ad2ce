"""The real-photo corpus is what the photo tests believe it is: every file decodes, awkward as promised."""

from __future__ import annotations

from PIL import Image

from jobs.imaging import decode_image, register_heif


def test_every_corpus_photo_decodes_upright_to_rgb_or_rgba(real_photo):
    register_heif()
    with Image.open(real_photo["path"]) as stored:
        assert list(stored.size) == real_photo["stored_size"]
    image = decode_image(real_photo["path"].read_bytes())
    assert image.mode in ("RGB", "RGBA")
    if real_photo["id"].startswith("orientation-"):
        # Every orientation of the portrait shows it upright: taller than wide, as the original.
        assert image.size == (512, 600)

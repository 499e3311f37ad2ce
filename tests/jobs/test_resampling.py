"""The resampler: Pillow's Lanczos kernel at SIMD speed, exact bands, premultiplied alpha, half-size levels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jobs import resampling
from jobs.resampling import halve, resample
from tests.jobs import images
from tests.jobs.similarity import ssim


def test_lanczos_matches_pillows_lanczos():
    source = images.photo(1600, 1200, seed=5)
    ours = resample(source, (700, 525))
    reference = source.resize((700, 525), Image.Resampling.LANCZOS)
    assert ours.size == (700, 525) and ours.mode == "RGB"
    assert ssim(ours, reference) >= 0.998


def test_a_fractional_box_resamples_the_region_as_pillow_does():
    source = images.photo(1600, 1200, seed=5)
    box = (310.4, 120.25, 1190.4, 1100.75)
    ours = resample(source, (440, 490), box)
    reference = source.resize((440, 490), Image.Resampling.LANCZOS, box=box)
    assert ssim(ours, reference) >= 0.998


@pytest.mark.parametrize("box", [None, (101.5, 0.0, 1333.5, 1400.0)])
def test_bands_join_exactly(box, monkeypatch):
    """A large resize is done in bands of output rows to bound its memory; the bands are filtered with
    the source rows around them, so the picture is bit for bit the one a single pass makes."""
    source = images.photo(1500, 1400, seed=2)
    monkeypatch.setattr(resampling, "BAND_BYTES", 10**12)
    whole = resample(source, (900, 1000), box)
    monkeypatch.setattr(resampling, "BAND_BYTES", 64 * 1024)  # about 16 rows a band
    banded = resample(source, (900, 1000), box)
    assert np.array_equal(np.asarray(whole), np.asarray(banded))


def test_transparent_pixels_do_not_bleed_their_colour_into_the_edge():
    # Opaque red next to fully transparent green: premultiplied, the edge stays red, only less opaque.
    pixels = np.zeros((200, 200, 4), dtype=np.uint8)
    pixels[:, :100] = (255, 0, 0, 255)
    pixels[:, 100:] = (0, 255, 0, 0)
    result = np.asarray(resample(Image.fromarray(pixels, "RGBA"), (30, 30)))
    edge = result[:, 15]
    assert 0 < edge[0, 3] < 255
    assert (edge[:, 0] >= 250).all() and (edge[:, 1] <= 5).all()


def test_a_box_edge_a_hair_outside_the_picture_is_clamped():
    source = images.gradient(300, 200)
    assert resample(source, (150, 100), (0.0, 0.0, 300.0000001, 200.0000001)).size == (150, 100)


def test_other_modes_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="RGB or RGBA"):
        resample(Image.new("P", (20, 20)), (10, 10))


def test_halve_averages_each_two_by_two_block():
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0::2, 0::2] = 200  # one pixel in four is 200: every 2×2 block averages 50
    half = halve(Image.fromarray(pixels))
    assert half.size == (3, 2)
    assert np.abs(np.asarray(half).astype(int) - 50).max() <= 1


def test_halve_rounds_odd_sizes():
    assert halve(images.gradient(401, 301)).size == (200, 150)


def test_the_last_band_ends_exactly_at_the_bottom_edge():
    """2560×1340 (the Sale banner's 1200:628 crop of a 2560×1600 photo) down to 1200×628 goes in bands.
    Summed from the band height, the last band's bottom came out at 1340.0000000000002, one hair past
    the picture, and the resizer refused the whole render."""
    source = images.gradient(2560, 1340)
    result = resample(source, (1200, 628))
    assert result.size == (1200, 628)
    assert ssim(result, source.resize((1200, 628), Image.Resampling.LANCZOS)) >= 0.998


@pytest.mark.parametrize("box", [None, (401.5, 10.25, 1333.5, 1190.0)])
def test_rgba_premultiplied_once_over_the_region_gives_the_resizers_own_pixels(box, monkeypatch):
    """RGBA is premultiplied once, over only the pixels the filter reaches, instead of over the whole
    source on every band; the pixels are the ones the resizer makes premultiplying it all itself."""
    pixels = np.asarray(images.photo(1500, 1200, seed=3).convert("RGBA")).copy()
    pixels[::7, :, 3] = 0
    pixels[:, ::5, 3] = 90
    source = Image.fromarray(pixels, "RGBA")
    full = box or (0.0, 0.0, 1500.0, 1200.0)
    reference = resampling._resample(source, (300, 400), full, resampling.LANCZOS)
    monkeypatch.setattr(resampling, "BAND_BYTES", 64 * 1024)
    ours = resample(source, (300, 400), box)
    assert ours.mode == "RGBA"
    assert np.abs(np.asarray(ours).astype(int) - np.asarray(reference).astype(int)).max() <= 1

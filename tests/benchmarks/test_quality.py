"""The benchmark's SSIM: 1 for identical pictures, lower the more a picture is degraded, luma only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from benchmarks.quality import ssim
from tests.jobs import images


def test_identical_pictures_score_one():
    photo = images.photo(200, 150)
    assert ssim(photo, photo.copy()) == pytest.approx(1.0)


def test_more_blur_scores_lower_and_the_score_is_symmetric():
    photo = images.photo(200, 150)
    light, heavy = photo.filter(ImageFilter.GaussianBlur(0.7)), photo.filter(ImageFilter.GaussianBlur(2))
    assert 1.0 > ssim(photo, light) > ssim(photo, heavy) > 0.3
    assert ssim(photo, heavy) == pytest.approx(ssim(heavy, photo))


def test_a_constant_shift_costs_little_and_noise_costs_more():
    grey = np.asarray(images.gradient(160, 120), dtype=np.int16)
    shifted = Image.fromarray(np.clip(grey + 4, 0, 255).astype(np.uint8))
    noise = np.random.default_rng(1).normal(0, 20, grey.shape)
    noisy = Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8))
    original = Image.fromarray(grey.astype(np.uint8))
    assert ssim(original, shifted) > 0.99 > ssim(original, noisy)


def test_transparency_is_judged_on_white_and_sizes_must_match():
    cutout = images.product_cutout(120, 90)
    flat = Image.new("RGB", cutout.size, "white")
    flat.paste(cutout, (0, 0), cutout)
    assert ssim(cutout, flat) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="compare"):
        ssim(cutout, flat.resize((60, 45)))


def test_pictures_smaller_than_the_window_are_compared_whole():
    tiny = images.gradient(8, 6)
    assert ssim(tiny, tiny) == pytest.approx(1.0) and ssim(tiny, Image.new("RGB", (8, 6))) < 0.5

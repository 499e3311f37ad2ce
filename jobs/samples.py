"""Deterministic sample photos (a product on a studio backdrop) for demos, load runs and benchmarks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PALETTE = [(38, 84, 160), (190, 48, 56), (40, 140, 90), (230, 160, 30), (90, 60, 140), (30, 30, 36)]


def product_photo(width: int, height: int, seed: int) -> Image.Image:
    """A shaded product (bottle, box or ball) off-centre on a light studio sweep with sensor noise."""
    rng = np.random.default_rng(seed)
    # Work at a quarter of the size and scale up: a 12-megapixel sample then takes ~0.2 s to make.
    small = (max(8, width // 4), max(8, height // 4))
    ys = np.linspace(0, 1, small[1], dtype=np.float32)[:, None, None]
    top = np.array([214, 216, 220], dtype=np.float32) - rng.uniform(0, 18)
    floor = np.array([248, 248, 246], dtype=np.float32)
    backdrop = Image.fromarray((top * (1 - ys) + floor * ys).repeat(small[0], axis=1).astype(np.uint8))

    draw = ImageDraw.Draw(backdrop)
    colour = PALETTE[seed % len(PALETTE)]
    cx = small[0] * rng.uniform(0.35, 0.65)
    cy = small[1] * rng.uniform(0.45, 0.6)
    size = min(small) * rng.uniform(0.35, 0.55)
    shape = seed % 3
    shadow = [cx - size * 0.5, cy + size * 0.48, cx + size * 0.5, cy + size * 0.6]
    draw.ellipse(shadow, fill=(200, 200, 200))
    if shape == 0:
        draw.rounded_rectangle([cx - size * 0.22, cy - size * 0.5, cx + size * 0.22, cy + size * 0.5],
                               radius=size * 0.1, fill=colour)  # fmt: skip
        draw.rectangle(
            [cx - size * 0.2, cy - size * 0.1, cx + size * 0.2, cy + size * 0.15], fill=(245, 245, 240)
        )
    elif shape == 1:
        draw.rectangle([cx - size * 0.45, cy - size * 0.35, cx + size * 0.45, cy + size * 0.5], fill=colour)
        draw.polygon([(cx - size * 0.45, cy - size * 0.35), (cx - size * 0.25, cy - size * 0.5),
                      (cx + size * 0.6, cy - size * 0.5), (cx + size * 0.45, cy - size * 0.35)],
                     fill=tuple(min(255, c + 40) for c in colour))  # fmt: skip
    else:
        draw.ellipse([cx - size * 0.45, cy - size * 0.45, cx + size * 0.45, cy + size * 0.45], fill=colour)
        draw.ellipse(
            [cx - size * 0.25, cy - size * 0.3, cx - size * 0.05, cy - size * 0.1], fill=(250, 250, 250)
        )
    image = backdrop.filter(ImageFilter.GaussianBlur(0.6)).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.normal(0, 2.0, (height, width, 1)).astype(np.float32)
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def product_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    product_photo(width, height, seed).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()

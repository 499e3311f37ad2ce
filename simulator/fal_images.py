"""The pictures the simulated fal draws: a pure function of prompt, seed and index."""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FAL_IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
# A custom size may not exceed 2048×2048 pixels: generated images are held in memory.
FAL_MAX_PIXELS = 2048 * 2048


def render_fal_image(prompt: str, seed: int, index: int, size: tuple[int, int]) -> bytes:
    """A JPEG that is a pure function of (prompt, seed, index) at `size`: a gradient, a few shapes, the prompt.

    Same inputs, same bytes; another seed or index, another picture. Geometry is drawn in normalised
    coordinates, so one prompt and seed look alike at every size.
    """
    digest = hashlib.sha256(json.dumps([prompt, seed, index]).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    width, height = size
    start, end = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    pixels = start * (1 - ramp[..., None]) + end * ramp[..., None]
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(-0.1, 0.9) * width, rng.uniform(-0.1, 0.8) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * width, y0 + rng.uniform(0.1, 0.5) * height
        colour = (*(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(150, 231)))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=colour)

    words = " ".join(prompt.split()[:4])
    if words:
        pixels_high = max(8, height // 14)
        font = ImageFont.load_default(size=pixels_high)
        draw.text(
            (width * 0.05, height * 0.9 - pixels_high),
            words,
            font=font,
            fill=(255, 255, 255, 240),
            stroke_width=max(1, pixels_high // 12),
            stroke_fill=(0, 0, 0, 170),
        )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()

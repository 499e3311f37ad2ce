"""Image quality for the benchmarks: SSIM (Wang, Bovik, Sheikh and Simoncelli 2004) on luma, in numpy."""

from __future__ import annotations

import numpy as np
from PIL import Image

# The paper's constants: an 11×11 Gaussian window of σ 1.5, K1 = 0.01, K2 = 0.03, 8-bit range.
WINDOW = 11
SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def luma(image: Image.Image) -> np.ndarray:
    """BT.601 luma as float64; transparency is flattened onto white first, as a viewer would show it."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def _gaussian_kernel() -> np.ndarray:
    offsets = np.arange(WINDOW) - WINDOW // 2
    kernel = np.exp(-(offsets**2) / (2 * SIGMA**2))
    return kernel / kernel.sum()


def _filter(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' convolution: each output pixel sees a full window, none sees padding."""
    taps = len(kernel)
    rows = values.shape[0] - taps + 1
    cols = values.shape[1] - taps + 1
    vertical = sum(kernel[k] * values[k : k + rows, :] for k in range(taps))
    return sum(kernel[k] * vertical[:, k : k + cols] for k in range(taps))


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of the luma of two images of the same size (1.0 means identical)."""
    if a.size != b.size:
        raise ValueError(f"cannot compare {a.size[0]}×{a.size[1]} with {b.size[0]}×{b.size[1]}")
    x, y = luma(a), luma(b)
    if min(x.shape) < WINDOW:
        # Too small for one window: compare the whole image as a single window.
        mx, my = x.mean(), y.mean()
        cov = ((x - mx) * (y - my)).mean()
        return float(
            ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (x.var() + y.var() + C2))
        )
    kernel = _gaussian_kernel()
    mx, my = _filter(x, kernel), _filter(y, kernel)
    xx, yy, xy = _filter(x * x, kernel), _filter(y * y, kernel), _filter(x * y, kernel)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    score = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return float(score.mean())

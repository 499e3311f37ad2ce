"""How alike two renders look: a quick SSIM over 8×8 windows, for the renderer and resampler tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Global-statistics SSIM on luma (Wang et al. 2004 constants); enough to compare resamplers."""
    x = np.asarray(a.convert("L"), dtype=np.float64)
    y = np.asarray(b.convert("L"), dtype=np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    # Mean SSIM over 8×8 windows.
    h, w = (x.shape[0] // 8) * 8, (x.shape[1] // 8) * 8
    xw = x[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 64)
    yw = y[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 64)
    mx, my = xw.mean(1), yw.mean(1)
    vx, vy = xw.var(1), yw.var(1)
    cov = ((xw - mx[:, None]) * (yw - my[:, None])).mean(1)
    return float((((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())

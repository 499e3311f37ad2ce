"""Cut-out masks: GrabCut segmentation seeded by a backdrop model, and the gate every cut-out must pass."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from jobs.errors import PermanentError

# GrabCut's graph grows with the pixel count: at 320 px it takes ~0.15 s, at 512 px ~0.6 s, and
# the edges it misses by a pixel are refined at full size afterwards anyway.
_GRABCUT_LONG_SIDE = 320
_GRABCUT_ITERATIONS = 4
# The gate judges masks at this size: enough for piece counts and edges, a few ms per photo.
_GATE_LONG_SIDE = 512

# Thresholds from the 59-photo real corpus at ≤640 px (per-photo figures in docs/cutout.md).
# Usable cut-outs (cameraman, coins, fog-pier, studio-product) kept 15-34% of the picture; the
# garbage kept a speck (dusk 0.3%, green-meadow 0.5%) or, on a 1×1 image, all of it.
MIN_KEPT = 0.005
MAX_KEPT = 0.95
# A piece at least this share of the largest one is a main piece: a set of coins has 24 of
# them, a cup and its saucer two, while scattered fragments are one or two big ones and dust.
_MAIN_PIECE = 0.25
# Share of the kept area the main pieces must hold: usable cut-outs 99-100%, scattered
# fragments 56-85% (deep-field 56%, the rocket among lamps and sparks 75-77%, clouds kept and
# the kite lost 74-81%, forest-path 85%).
MIN_MAIN_PIECES = 0.88
# Mean gradient along the cut over the picture's mean gradient: usable cut-outs follow edges at
# 5.5-19.5×; cuts through flat grass, sky or a table scored 0.6-2.4 (the old method's
# green-meadow 1.5, dusk 0.6; a hand-drawn ellipse through a table 2.1).
MIN_EDGE_CONTRAST = 3.5
# See measure_cutout: a kept strip this much longer than thick, over this share of the frame, is a band.
_BAND_ASPECT, _BAND_REACH = 5.0, 0.6


@dataclass(frozen=True)
class CutoutQuality:
    """What the gate measures on a mask: how much it keeps, in how many groups, along which edges."""

    kept: float  # share of the picture that is opaque
    main_pieces: float  # share of the kept area in pieces at least a quarter the size of the largest
    largest_piece: float  # share of the kept area in the largest piece
    edge_contrast: float  # mean image gradient along the cut over the picture's mean gradient
    spans_frame: bool = False  # the largest piece runs across the frame, edge to edge or as a thin strip

    def problem(self) -> str | None:
        """Why the cut-out is unusable, in plain words; None when it passes."""
        if self.kept < MIN_KEPT:
            return f"The cut-out kept almost nothing of the picture ({self.kept:.1%} of it)."
        if self.kept > MAX_KEPT:
            return (
                f"The cut-out kept almost the whole picture ({self.kept:.0%} of it): no backdrop was found."
            )
        if self.main_pieces < MIN_MAIN_PIECES:
            return (
                "The cut-out kept only scattered fragments of the picture (largest piece "
                f"{self.largest_piece:.0%} of what was kept, and {1 - self.main_pieces:.0%} of it "
                "in small bits)."
            )
        if self.spans_frame:
            return (
                "The cut-out is a band running across the picture (a horizon, a shore), not a subject "
                "standing apart from its backdrop."
            )
        if self.edge_contrast < MIN_EDGE_CONTRAST:
            return (
                "The cut-out's outline runs through flat parts of the picture instead of along the "
                f"subject's edges (edge strength {self.edge_contrast:.1f}× the picture's average, "
                f"a clean cut has at least {MIN_EDGE_CONTRAST:g}×)."
            )
        return None


def measure_cutout(image: Image.Image, alpha: Image.Image) -> CutoutQuality:
    """Measure the "L" mask `alpha` against the picture `image` it was cut from (same size)."""
    scale = min(1.0, _GATE_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    kept = np.asarray(alpha.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)) >= 128
    share = float(np.mean(kept))
    if share == 0.0 or share == 1.0:
        return CutoutQuality(kept=share, main_pieces=1.0, largest_piece=1.0, edge_contrast=0.0)

    mask = kept.astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    largest = float(areas.max())
    _, _, width, height = stats[1 + int(areas.argmax()), :4]
    spans = (width == size[0] and size[0] > 2) or (height == size[1] and size[1] > 2)
    # A strip across most of the frame, five times longer than thick, is a horizon or a shore that the
    # backdrop model split off a landscape (the corpus's storm: 5.7:1 over 88% of the width); products
    # and people are stockier (the fog-pier's pier, the stretchiest that passes, is 3.4:1).
    spans = spans or (width >= _BAND_REACH * size[0] and width >= _BAND_ASPECT * height)
    spans = spans or (height >= _BAND_REACH * size[1] and height >= _BAND_ASPECT * width)
    main_pieces = float(areas[areas >= _MAIN_PIECE * largest].sum() / areas.sum())

    if image.mode == "RGBA":
        # Colours under transparent pixels are arbitrary (often black); judge against neutral grey.
        flat = Image.new("RGB", image.size, (128, 128, 128))
        flat.paste(image, (0, 0), image)
        image = flat
    gray = np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0).convert("L"))
    gray = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    magnitude = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    square = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(mask, square) != cv2.erode(mask, square)
    # Where the subject runs off the frame there is no edge to follow; that is not a bad cut.
    boundary[0, :] = boundary[-1, :] = boundary[:, 0] = boundary[:, -1] = False
    typical = float(magnitude.mean())
    if not boundary.any() or typical <= 0:
        contrast = 0.0 if typical > 0 or not boundary.any() else float("inf")
    else:
        contrast = float(magnitude[boundary].mean()) / typical
    return CutoutQuality(
        kept=share,
        main_pieces=main_pieces,
        largest_piece=largest / float(areas.sum()),
        edge_contrast=contrast,
        spans_frame=bool(spans),
    )


def check_cutout(image: Image.Image, alpha: Image.Image) -> CutoutQuality:
    """The mask's quality; PermanentError(code="unusable_cutout") when the gate refuses it."""
    quality = measure_cutout(image, alpha)
    problem = quality.problem()
    if problem:
        raise PermanentError(problem, code="unusable_cutout")
    return quality


def segment_with_grabcut(rgb: np.ndarray, backdrop_like: np.ndarray, certain: np.ndarray) -> np.ndarray:
    """Subject mask (bool) of the uint8 RGB array `rgb` by GrabCut, from a backdrop model's verdict.

    `backdrop_like`: pixels whose colour matches the backdrop model (probable background);
    `certain`: backdrop pixels sure enough to fix (the border band where it matches the model).
    Everything else starts as probable subject; GrabCut's colour models and edge-aware smoothing
    then settle which of them belong, which a colour threshold alone cannot (shadows, soft tints).
    """
    height, width = backdrop_like.shape
    scale = min(1.0, _GRABCUT_LONG_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    labels = np.where(backdrop_like, cv2.GC_PR_BGD, cv2.GC_PR_FGD).astype(np.uint8)
    labels[certain] = cv2.GC_BGD
    if scale < 1.0:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    if not np.any(labels == cv2.GC_PR_FGD) or np.all(labels == cv2.GC_PR_FGD):
        subject = labels == cv2.GC_PR_FGD
    else:
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(12)  # GrabCut's k-means start is random; the same photo must give the same cut
        cv2.grabCut(
            np.ascontiguousarray(rgb[..., ::-1]),
            labels,
            None,
            background_model,
            foreground_model,
            _GRABCUT_ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
        subject = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if scale == 1.0:
        return subject
    grown = cv2.resize(subject.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR)
    return grown >= 128

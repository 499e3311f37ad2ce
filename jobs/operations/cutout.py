"""Cut-out masks: a backdrop model and GrabCut segmentation, the gate every cut-out must pass, the content box."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter

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
    labels: np.ndarray = np.where(backdrop_like, cv2.GC_PR_BGD, cv2.GC_PR_FGD).astype(np.uint8)
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
        # OpenCV's stubs insist on a rect, which GC_INIT_WITH_MASK ignores; the binding accepts None.
        cv2.grabCut(  # type: ignore[call-overload]
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


# --- background removal ---------------------------------------------------------------------------

# The backdrop is modelled and segmented at this size; only the edge band is refined at full size.
_MASK_LONG_SIDE = 512
# Share of border pixels that must match the backdrop model for the backdrop to count as plain.
_MIN_PLAIN_BORDER = 0.6


def background_alpha(image: Image.Image, *, threshold: float = 0.12, feather: float = 2.0) -> Image.Image:
    """An "L" alpha mask, 0 on a plain backdrop connected to the picture's border, 255 on the subject.

    The backdrop colour is a smooth (quadratic) surface fitted to the border pixels in CIE Lab,
    so studio sweeps and vignettes count as backdrop. Pixels within `threshold` (ΔE/100) of it
    that connect to the border are background; enclosed regions (a white label on a bottle) stay.
    Raises PermanentError(code="no_plain_background") when the border does not look like a
    plain backdrop, and code="no_subject" when nothing stands out from it.
    """
    rgb = image.convert("RGB")
    scale = min(1.0, _MASK_LONG_SIDE / max(rgb.size))
    small_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(small_size, Image.Resampling.BILINEAR, reducing_gap=2.0) if scale < 1 else rgb
    lab = srgb_to_lab(np.asarray(small))
    height, width = lab.shape[:2]

    band = max(2, round(0.02 * max(width, height)))
    rows, cols = np.mgrid[0:height, 0:width]
    border = (rows < band) | (rows >= height - band) | (cols < band) | (cols >= width - band)
    tolerance = threshold * 100
    model = _BackdropModel.fit(
        lab[border], cols[border] / max(1, width - 1), rows[border] / max(1, height - 1), tolerance
    )
    if model.inlier_share < _MIN_PLAIN_BORDER:
        raise PermanentError(
            "Background removal needs a plain or studio backdrop, and the edges of this picture "
            f"are too varied (only {model.inlier_share:.0%} of them look like one backdrop colour). "
            "Use a photo on a plain background, or a remote provider.",
            code="no_plain_background",
        )
    # Noisy backdrops (high ISO, JPEG grain) get a proportionally wider tolerance.
    tolerance += 2 * model.noise
    xs, ys = np.linspace(0, 1, width), np.linspace(0, 1, height)
    distance = model.distance(lab, xs[None, :], ys[:, None])

    passable = distance < tolerance
    ring = np.zeros_like(passable)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    backdrop = connected_to(passable, passable & ring)
    # The colour threshold alone keeps shadows and loses subject pixels near the backdrop's
    # colour; GrabCut starts from its verdict and settles both by colour models and edges.
    kept = segment_with_grabcut(np.asarray(small), backdrop, backdrop & border)
    backdrop = connected_to(~kept, ~kept & ring)
    subject = Image.fromarray(np.where(backdrop, 0, 255).astype(np.uint8))
    # Median drops isolated noisy specks; max-then-min closes pin holes and hairline cracks.
    subject = subject.filter(ImageFilter.MedianFilter(3)).filter(ImageFilter.MaxFilter(3))
    subject = subject.filter(ImageFilter.MinFilter(3))
    if np.count_nonzero(np.asarray(subject)) < 0.002 * width * height:
        raise PermanentError("Found no subject: the whole picture matches its backdrop.", code="no_subject")

    alpha = np.array(subject) if scale == 1.0 else _refine_edges(rgb, subject, model, tolerance)
    mask = Image.fromarray(alpha)
    if feather > 0:
        mask = _feather(mask, feather)
    return mask


@dataclass(frozen=True)
class _BackdropModel:
    """A quadratic surface per Lab channel over normalised (x, y), fitted robustly to the border."""

    coefficients: np.ndarray  # 6 × 3
    inlier_share: float
    noise: float

    @staticmethod
    def _terms(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        x, y = np.broadcast_arrays(x, y)
        return [np.ones_like(x), x, y, x * x, x * y, y * y]

    @classmethod
    def fit(cls, values: np.ndarray, x: np.ndarray, y: np.ndarray, tolerance: float) -> _BackdropModel:
        design = np.stack(cls._terms(x, y), axis=1)
        # Start from the median colour, then refit on the pixels the surface explains: the
        # subject touching the border is an outlier, not part of the backdrop.
        residual = np.linalg.norm(values - np.median(values, axis=0), axis=1)
        coefficients = np.zeros((6, 3), dtype=np.float64)
        for _ in range(3):
            inliers = residual < tolerance
            if np.count_nonzero(inliers) < 12:
                break
            coefficients, *_ = np.linalg.lstsq(design[inliers], values[inliers], rcond=None)
            residual = np.linalg.norm(values - design @ coefficients, axis=1)
        inliers = residual < tolerance
        share = float(np.mean(inliers))
        noise = float(1.4826 * np.median(residual[inliers])) if share > 0 else tolerance
        return cls(coefficients, share, noise)

    def distance(self, lab: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        predicted = sum(term[..., None] * self.coefficients[i] for i, term in enumerate(self._terms(x, y)))
        return np.linalg.norm(lab - predicted, axis=-1)


def already_cut_out(image: Image.Image) -> bool:
    """An RGBA picture whose border is mostly transparent has had its backdrop removed already."""
    if image.mode != "RGBA" or min(image.size) < 3:
        return False
    alpha = np.asarray(image.getchannel("A"))
    border = np.concatenate([alpha[0], alpha[-1], alpha[1:-1, 0], alpha[1:-1, -1]])
    return float(np.mean(border < 128)) >= _MIN_PLAIN_BORDER


def _refine_edges(
    rgb: Image.Image, subject: Image.Image, model: _BackdropModel, tolerance: float
) -> np.ndarray:
    # The small mask is only accurate to one small pixel (8 full pixels at 12 MP). Where its
    # upsampled version is undecided, judge each full-resolution pixel by its own colour.
    alpha = np.array(subject.resize(rgb.size, Image.Resampling.BILINEAR))
    undecided = np.flatnonzero((alpha > 0) & (alpha < 255))
    if undecided.size == 0:
        return alpha
    rows, cols = np.divmod(undecided, rgb.width)
    pixels = np.asarray(rgb).reshape(-1, 3)[undecided]
    distance = model.distance(
        srgb_to_lab(pixels), cols / max(1, rgb.width - 1), rows / max(1, rgb.height - 1)
    )
    # A soft ramp from "backdrop" to twice as far keeps anti-aliased edges anti-aliased.
    ramp = np.clip((distance - tolerance) / tolerance, 0, 1)
    alpha.reshape(-1)[undecided] = np.rint(ramp * 255).astype(np.uint8)
    return alpha


def _feather(mask: Image.Image, radius: float) -> Image.Image:
    # Only the edges change under a blur; blurring just their bounding box saves most of the work.
    edges = mask.filter(ImageFilter.FIND_EDGES).getbbox()
    if edges is None:
        return mask
    pad = math.ceil(radius * 3) + 2
    box = (
        max(0, edges[0] - pad),
        max(0, edges[1] - pad),
        min(mask.width, edges[2] + pad),
        min(mask.height, edges[3] + pad),
    )
    blurred = mask.crop(box).filter(ImageFilter.GaussianBlur(radius))
    result = mask.copy()
    result.paste(blurred, box[:2])
    return result


def connected_to(passable: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The `passable` pixels 4-connected to a seed, by alternating row and column run sweeps.

    Each sweep marks every run of passable pixels that touches a reached pixel, so a region is
    filled in as many sweeps as its paths have turns, each sweep a few vectorised numpy passes.
    """
    height, width = passable.shape
    row_runs = _run_ids(passable)
    column_runs = _run_ids(np.ascontiguousarray(passable.T))
    reached = seeds & passable
    count = int(np.count_nonzero(reached))
    while True:
        reached = _spread(row_runs, passable, reached)
        reached = _spread(column_runs, passable.T, reached.T).T
        new_count = int(np.count_nonzero(reached))
        if new_count == count:
            return np.ascontiguousarray(reached)
        count = new_count


def _run_ids(passable: np.ndarray) -> np.ndarray:
    starts = passable.copy()
    starts[:, 1:] &= ~passable[:, :-1]
    return np.cumsum(starts.ravel()).reshape(passable.shape)


def _spread(run_ids: np.ndarray, passable: np.ndarray, reached: np.ndarray) -> np.ndarray:
    touched = np.zeros(int(run_ids[-1, -1]) + 2, dtype=bool)
    touched[run_ids[reached]] = True
    return touched[run_ids] & passable


_SRGB_TO_LINEAR = np.where(
    np.arange(256) / 255 <= 0.04045,
    np.arange(256) / 255 / 12.92,
    ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4,
).astype(np.float32)
# Linear sRGB to XYZ (D65), each row divided by the D65 white so white maps to (1, 1, 1).
_RGB_TO_XYZ = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).astype(np.float32)


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of uint8 sRGB pixels shaped (..., 3), as float32."""
    linear = _SRGB_TO_LINEAR[pixels]
    xyz = linear @ _RGB_TO_XYZ.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def content_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Pixel box of what is not transparent or not the plain border colour; None if undecidable."""
    if image.mode == "RGBA":
        return image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    scale = min(1.0, _MASK_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    lab = srgb_to_lab(np.asarray(small))
    edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    colour = np.median(edge, axis=0)
    if np.mean(np.linalg.norm(edge - colour, axis=1) < 12) < _MIN_PLAIN_BORDER:
        return None  # no single border colour: nothing to trim
    differs = Image.fromarray(np.where(np.linalg.norm(lab - colour, axis=-1) > 12, 255, 0).astype(np.uint8))
    box = differs.filter(ImageFilter.MedianFilter(3)).getbbox()
    if box is None:
        return None
    # Map back with one small pixel of slack so anti-aliased edges are not cut.
    return (
        max(0, math.floor((box[0] - 1) / scale)),
        max(0, math.floor((box[1] - 1) / scale)),
        min(image.width, math.ceil((box[2] + 1) / scale)),
        min(image.height, math.ceil((box[3] + 1) / scale)),
    )

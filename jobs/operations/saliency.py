"""Where the subject of a photo is: its alpha or content box, else faces, else its strongest salient region."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import cv2.data
import numpy as np
from PIL import Image

from jobs.operations.cutout import content_box

# Detection runs on a copy this long: a kite 7% of the width is still 18 px, and a 12 MP photo costs
# tens of milliseconds, most of it the resize.
SALIENCY_LONG_SIDE = 256
# Sharpness is read at twice that size: a background's blur shows at 512 px and is gone at 256.
_SHARPNESS_LONG_SIDE = 512

# Lab is quantised to 8 × 16 × 16 bins for the colour statistics.
_L_BINS, _AB_BINS = 8, 16
# A colour covering more than about this share of the picture is background more often than subject.
_COMMON_SHARE = 0.01
# Seeds of a region are pixels at least this salient; the region grows over pixels at least _GROW.
_SEED, _GROW = 0.5, 0.25
# On a palette picture the region grows only over pixels more salient than this share of the picture.
_PALETTE_GROW_PERCENTILE = 95
# Faces are looked for on a copy this long: a face a tenth of a portrait's width is still 40 px, and
# OpenCV's frontal-face cascade takes 20-60 ms there. Faces smaller than _MIN_FACE of the long side are
# crowd or background, not the subject.
_FACE_LONG_SIDE = 400
_MIN_FACE = 0.06
# A face box is the eyes-to-chin square; the head around it (hair, ears, chin) is this much wider.
_HEAD_MARGIN = 0.15


@dataclass(frozen=True)
class SalientSubject:
    """Normalised box (x0, y0, x1, y1) of the strongest salient region, and its saliency-weighted centre."""

    box: tuple[float, float, float, float]
    focus: tuple[float, float]


def saliency_map(image: Image.Image) -> np.ndarray:
    """Float map in 0..1 at ≤256 px: colour rarity against the picture's own colours, raised where the
    picture is sharp (in focus) and, gently, towards the centre."""
    # One resize of the photo (the costly part on 12 MP); the smaller copy is made from it.
    large = _small_lab(image, _SHARPNESS_LONG_SIDE)
    scale = min(1.0, SALIENCY_LONG_SIDE / max(large.shape[:2]))
    width, height = max(1, round(large.shape[1] * scale)), max(1, round(large.shape[0] * scale))
    lab = cv2.resize(large, (width, height), interpolation=cv2.INTER_AREA)
    colour = _colour_rarity(cv2.GaussianBlur(lab, (0, 0), 1.0))
    sharpness = cv2.resize(_sharpness(large[..., 0]), (width, height), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = ((xs + 0.5) / width - 0.5) ** 2 + ((ys + 0.5) / height - 0.5) ** 2
    # Photographers put subjects off centre (thirds), so the prior only breaks ties.
    centre = 0.6 + 0.4 * np.exp(-distance / (2 * 0.3**2))
    saliency = colour * (0.3 + 0.7 * sharpness) * centre
    peak = float(saliency.max())
    return saliency / peak if peak > 0 else saliency


def salient_subject(image: Image.Image) -> SalientSubject:
    """The faces in the picture when it has any (people look at faces first, and a crop that keeps a
    colourful badge but cuts the face is the worst a portrait can get); otherwise the region grown from
    the most salient pixels that holds the most saliency, not touching the border if another one does
    not, boxed with the regions its box overlaps; the whole picture when nothing stands out."""
    faces = find_faces(image)
    if faces:
        return faces
    saliency = saliency_map(image)
    height, width = saliency.shape
    if saliency.max() <= 0:
        return SalientSubject((0.0, 0.0, 1.0, 1.0), (0.5, 0.5))
    # Hysteresis: a region is the grown pixels connected to a seed, so a large subject is boxed whole
    # while a texture's scattered bright specks do not join into one huge box.
    grow = _GROW
    if _has_palette_colours(image):
        # A palette of 256 colours turns a blurred background into flat patches of rare colour with hard
        # edges, salient enough to join the subject (a ladybird and the flowers behind it): there a region
        # grows only over pixels that stand out from most of the picture.
        grow = max(_GROW, float(np.percentile(saliency, _PALETTE_GROW_PERCENTILE)))
    grown: np.ndarray = (saliency >= grow).astype(np.uint8)
    grown = cv2.morphologyEx(grown, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    seeded = np.bincount(labels[saliency >= _SEED], minlength=count) > 0
    mass = np.bincount(labels.ravel(), weights=saliency.ravel(), minlength=count)
    best, best_score = 0, -1.0
    for index in range(1, count):
        if not seeded[index]:
            continue
        x, y, w, h, _ = stats[index]
        edges = (x == 0) + (y == 0) + (x + w == width) + (y + h == height)
        # Clouds, foliage and sky cut by the frame are rarely what the picture is of.
        score = float(mass[index]) * 0.5**edges
        if score > best_score:
            best, best_score = index, score
    # A region whose box overlaps the chosen one's is the same subject cut apart by a thin line below the grow
    # threshold (a cat's eye and the fur of its face): the box takes it in, the focus stays on the chosen one.
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right, bottom = left + stats[:, cv2.CC_STAT_WIDTH], top + stats[:, cv2.CC_STAT_HEIGHT]
    joined = (left < right[best]) & (left[best] < right) & (top < bottom[best]) & (top[best] < bottom)
    joined[0] = False  # the background
    x0, y0 = int(left[joined].min()), int(top[joined].min())
    x1, y1 = int(right[joined].max()), int(bottom[joined].max())
    weights = np.where(labels == best, saliency, 0.0)
    total = float(weights.sum())
    rows, cols = np.mgrid[0:height, 0:width]
    focus = (
        (float((weights * cols).sum()) / total + 0.5) / width,
        (float((weights * rows).sum()) / total + 0.5) / height,
    )
    return SalientSubject((x0 / width, y0 / height, x1 / width, y1 / height), focus)


def find_faces(image: Image.Image) -> SalientSubject | None:
    """The box around every frontal face (each widened to the head) and the centre of the largest face,
    or None. Haar cascade from OpenCV's own data, no model download."""
    scale = min(1.0, _FACE_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # An RGB photo is made small before it is made grey: grey first was a full-size copy (24 MB at 24 MP).
    small = (
        image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0).convert("L")
        if image.mode == "RGB"
        else image.convert("L").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    )
    grey = np.asarray(small)
    smallest = max(20, round(_MIN_FACE * max(size)))
    if min(size) < smallest:
        return None
    # minNeighbors 8: no false faces in the corpus's foliage, moss and textures (the default 3 finds some).
    found = _face_cascade().detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=8, minSize=(smallest, smallest)
    )
    if len(found) == 0:
        return None
    width, height = size
    boxes = [
        (
            max(0.0, (x - _HEAD_MARGIN * w) / width),
            max(0.0, (y - _HEAD_MARGIN * h) / height),
            min(1.0, (x + w + _HEAD_MARGIN * w) / width),
            min(1.0, (y + h + _HEAD_MARGIN * h) / height),
        )
        for x, y, w, h in found
    ]
    largest = max(found, key=lambda face: face[2] * face[3])
    x, y, w, h = largest
    box = (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    return SalientSubject(box, ((x + w / 2) / width, (y + h / 2) / height))


def _has_palette_colours(image: Image.Image) -> bool:
    """Whether the picture has at most 256 colours, not all grey (a GIF or 8-bit PNG of a photo), judged on
    a nearest-neighbour copy, which keeps the palette's colours exactly and costs under a millisecond."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    scale = min(1.0, _SHARPNESS_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    colours = image.resize(size, Image.Resampling.NEAREST).getcolors(256)
    return colours is not None and any(
        isinstance(colour, tuple) and len(set(colour[:3])) > 1 for _, colour in colours
    )


@functools.cache
def _face_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _small_lab(image: Image.Image, long_side: int) -> np.ndarray:
    # convert() to the same mode is a full copy (96 MB for a 24 MP decode): only convert what is not RGB.
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if image.mode == "RGBA":
        # Judge a cut-out against neutral grey, not against whatever its transparent pixels hold.
        rgb = Image.new("RGB", image.size, (128, 128, 128))
        rgb.paste(image, (0, 0), image)
    scale = min(1.0, long_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)
    return cv2.cvtColor(small / 255, cv2.COLOR_RGB2Lab)


def _colour_rarity(lab: np.ndarray) -> np.ndarray:
    """Each pixel's colour: how far it is from the picture's colours (weighted by how much of the picture
    they cover), damped for colours that are themselves common. 0..1."""
    l_bin = np.clip(lab[..., 0] * (_L_BINS / 100), 0, _L_BINS - 1).astype(np.int32)
    a_bin = np.clip((lab[..., 1] + 128) * (_AB_BINS / 256), 0, _AB_BINS - 1).astype(np.int32)
    b_bin = np.clip((lab[..., 2] + 128) * (_AB_BINS / 256), 0, _AB_BINS - 1).astype(np.int32)
    bins = ((l_bin * _AB_BINS + a_bin) * _AB_BINS + b_bin).ravel()
    counts = np.bincount(bins, minlength=_L_BINS * _AB_BINS * _AB_BINS)
    used = np.flatnonzero(counts)
    share = counts[used] / bins.size
    colours = (
        np.stack(
            [np.bincount(bins, weights=lab[..., c].ravel(), minlength=counts.size)[used] for c in range(3)],
            axis=-1,
        )
        / counts[used, None]
    )
    # Global contrast over at most a few hundred occupied bins: one small matrix product.
    distances = np.linalg.norm(colours[:, None, :] - colours[None, :, :], axis=-1)
    score = (distances @ share) / (1 + share / _COMMON_SHARE)
    lookup = np.zeros(counts.size, dtype=np.float32)
    lookup[used] = score
    rarity = cv2.GaussianBlur(lookup[bins].reshape(lab.shape[:2]), (0, 0), 2.0)
    peak = float(rarity.max())
    return rarity / peak if peak > 0 else rarity


def _sharpness(lightness: np.ndarray) -> np.ndarray:
    """Local fine-detail energy (|Laplacian| of lightness, smoothed), 0..1 by its 99th percentile: high on
    what is in focus, low on a blurred background."""
    energy = np.abs(cv2.Laplacian(lightness, cv2.CV_32F, ksize=3))
    energy = cv2.GaussianBlur(energy, (0, 0), 4.0)
    scale = float(np.percentile(energy, 99))
    return np.clip(energy / scale, 0, 1) if scale > 0 else np.zeros_like(energy)


def locate_subject(image: Image.Image, method: str = "auto") -> SalientSubject:
    """The subject's normalised box and focus: alpha bounding box, backdrop contrast or saliency."""
    if min(image.size) < 3:
        # Too small to hold a subject of its own: all of it is the subject.
        return SalientSubject((0.0, 0.0, 1.0, 1.0), (0.5, 0.5))
    box = None
    if method in ("auto", "subject") and image.mode == "RGBA":
        box = image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    if box is None and method == "subject":
        box = content_box(image)
    if box is None:
        return salient_subject(image)
    x0, y0, x1, y1 = _normalised(box, image.size)
    return SalientSubject((x0, y0, x1, y1), ((x0 + x1) / 2, (y0 + y1) / 2))


def _normalised(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[float, float, float, float]:
    return (box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1])

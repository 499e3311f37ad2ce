"""The benchmark corpora: generated photos at 12 and 24 megapixels (made once and kept), and real photos.

Two subjects: `product`, a product on a white studio sweep with sensor noise (jobs.samples, what the
e-commerce pack is for), and `scene`, a busy textured outdoor-like photo (tests.jobs.images.photo),
whose files are three times larger and whose detail is harder on both resizers and encoders.

The real corpus is the real-photo cache that `make corpus` builds (corpus.build, PIXELMILL_CORPUS_DIR;
a manifest.json lists each photo's id, file and tags): photographs bring the detail
and noise a generator does not, and the odd encodings (RGBA and 16-bit PNG, CMYK, HEIC) users send.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from corpus.build import default_cache_dir
from jobs.samples import product_photo

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "bench-out" / "corpus"
SUBJECTS = ("product", "scene")
FORMATS = ("jpeg", "png")
EXTENSIONS = {"jpeg": "jpg", "png": "png"}
REAL_CORPUS_DIR = default_cache_dir()
# A photo of a few pixels says nothing about speed or sharpness.
REAL_SKIPPED_TAGS = frozenset({"tiny"})
# Bump when a generator changes, so a kept corpus is made again rather than silently reused.
VERSION = 1


@dataclass(frozen=True)
class CorpusImage:
    subject: str
    megapixels: float
    format: str
    path: Path
    real: bool = False

    @property
    def label(self) -> str:
        if self.real:
            return f"{self.subject} {self.megapixels:.1f} MP"
        return f"{self.subject} {self.megapixels} MP {self.format.upper()}"

    def read(self) -> bytes:
        return self.path.read_bytes()


def dimensions(megapixels: float) -> tuple[int, int]:
    """4:3, the shape of most camera sensors."""
    width = int(math.sqrt(megapixels * 1_000_000 * 4 / 3))
    return width, int(width * 3 / 4)


def scene_photo(width: int, height: int, seed: int) -> Image.Image:
    """The busy test scene drawn at half size, enlarged, with full-resolution sensor noise on top."""
    from tests.jobs.images import photo

    base = photo(width // 2, height // 2, seed=seed).resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 4, (height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_corpus(
    megapixels: tuple[int, ...] = (12, 24),
    subjects: tuple[str, ...] = SUBJECTS,
    formats: tuple[str, ...] = FORMATS,
    directory: Path = CORPUS_DIR,
) -> list[CorpusImage]:
    """Make (or reuse) every combination; JPEG quality 90 like a camera, PNG at zlib's default level."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus = []
    for size in megapixels:
        for subject in subjects:
            wanted = {fmt: directory / f"v{VERSION}-{subject}-{size}mp.{EXTENSIONS[fmt]}" for fmt in formats}
            missing = [fmt for fmt, path in wanted.items() if not path.exists()]
            if missing:
                width, height = dimensions(size)
                seed = 7 if subject == "product" else 3
                image = (
                    product_photo(width, height, seed)
                    if subject == "product"
                    else scene_photo(width, height, seed)
                )
                for fmt in missing:
                    partial = wanted[fmt].with_suffix(".part")
                    if fmt == "jpeg":
                        image.save(partial, "JPEG", quality=90)
                    else:
                        image.save(partial, "PNG", compress_level=6)
                    partial.rename(wanted[fmt])
            corpus += [CorpusImage(subject, size, fmt, path) for fmt, path in wanted.items()]
    return corpus


def real_corpus(directory: Path = REAL_CORPUS_DIR, ids: tuple[str, ...] = ()) -> list[CorpusImage]:
    """The real photos of the cache's manifest (those `ids` only, when given) that are on disk."""
    manifest = json.loads((directory / "manifest.json").read_text())
    corpus = []
    for photo in manifest["photos"]:
        path = directory / photo["file"]
        if ids and photo["id"] not in ids:
            continue
        if REAL_SKIPPED_TAGS & set(photo.get("tags", ())) or not path.exists():
            continue
        fmt = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
        corpus.append(CorpusImage(photo["id"], float(photo.get("megapixels") or 0), fmt, path, real=True))
    return corpus

"""The benchmark corpus: deterministic photos at 12 and 24 megapixels, as JPEG and PNG, made once and kept.

Two subjects: `product`, a product on a white studio sweep with sensor noise (jobs.samples, what the
e-commerce pack is for), and `scene`, a busy textured outdoor-like photo (tests.jobs.images.photo),
whose files are three times larger and whose detail is harder on both resizers and encoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.samples import product_photo

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "bench-out" / "corpus"
SUBJECTS = ("product", "scene")
FORMATS = ("jpeg", "png")
EXTENSIONS = {"jpeg": "jpg", "png": "png"}
# Bump when a generator changes, so a kept corpus is made again rather than silently reused.
VERSION = 1


@dataclass(frozen=True)
class CorpusImage:
    subject: str
    megapixels: int
    format: str
    path: Path

    @property
    def label(self) -> str:
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

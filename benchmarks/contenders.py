"""What the renderer is measured against, each doing the same work: the pack's outputs plus the 320 px
preview, the same sizes, crops and paddings, and the same encoder settings (jobs.rendering.encode).

- `Pixelmill`: the worker's own path, `run_pipeline` with no steps (draft decode, cascade, encode).
- `NaivePillow`: what one writes first: decode at full size, every output resized from the original.
- `Libvips`: pyvips (libvips from pyvips-binary), `thumbnail` with shrink-on-load for the largest size,
  then a cascade of Lanczos-3 resizes; intermediates used more than once are kept in memory, the rest
  stay lazy so a crop computes only its window.
- `Floor`: decode at the draft scale Pixelmill picks, plus every encode; resizing costs nothing (the
  pictures to encode are made before the clock starts).

Each contender is built once per process; `prepare` takes what may be done before timing, `run`
does the timed work and returns the encoded outputs in spec order.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager

from PIL import Image, ImageOps

from jobs import rendering
from jobs.imaging import decode_keeping_profile, place_window, read_dimensions
from jobs.operations import colour_rgb
from jobs.outputs import OutputSpec
from jobs.rendering import PREVIEW_SPEC, draft_size, encode, frame, run_pipeline


def with_preview(specs: Sequence[OutputSpec]) -> list[OutputSpec]:
    return [*specs, PREVIEW_SPEC]


class Contender:
    name = ""

    def prepare(self, data: bytes, specs: Sequence[OutputSpec]) -> None:
        self.data, self.specs = data, list(specs)

    def run(self) -> list[bytes]:
        raise NotImplementedError


class Pixelmill(Contender):
    name = "pixelmill"

    def run(self) -> list[bytes]:
        result = run_pipeline(self.data, [], self.specs)
        return [output.data for output in result.outputs] + [result.preview]


class NaivePillow(Contender):
    name = "naive"

    def run(self) -> list[bytes]:
        image = Image.open(io.BytesIO(self.data))
        image = ImageOps.exif_transpose(image).convert("RGB")
        outputs = []
        for spec in with_preview(self.specs):
            resized = image.resize(spec.resized_size(image.size), Image.Resampling.LANCZOS)
            outputs.append(encode(frame(resized, spec, {}), spec))
        return outputs


@contextmanager
def captured_encodes(store: list[tuple[Image.Image, OutputSpec]]):
    real = rendering.encode
    rendering.encode = lambda image, spec: store.append((image, spec)) or b""
    try:
        yield
    finally:
        rendering.encode = real


class Floor(Contender):
    name = "floor"

    def prepare(self, data: bytes, specs: Sequence[OutputSpec]) -> None:
        super().prepare(data, specs)
        self.pictures: list[tuple[Image.Image, OutputSpec]] = []
        with captured_encodes(self.pictures):
            run_pipeline(data, [], self.specs)
        # Encoded largest first; handed back in spec order like the others.
        position = {id(spec): n for n, spec in enumerate(with_preview(self.specs))}
        self.pictures.sort(key=lambda item: position[id(item[1])])
        self.draft = draft_size(data, [], with_preview(specs))

    def run(self) -> list[bytes]:
        decode_keeping_profile(self.data, min_size=self.draft)  # the renderer's own decode
        return [encode(picture, spec) for picture, spec in self.pictures]


class Libvips(Contender):
    name = "libvips"

    def __init__(self) -> None:
        # One thread, like one worker on one core; no operation cache (it would serve repeats for free).
        os.environ["VIPS_CONCURRENCY"] = "1"
        import pyvips

        logging.getLogger("pyvips").setLevel(logging.WARNING)  # it logs every thread pool at INFO
        pyvips.cache_set_max(0)
        self.pyvips = pyvips

    def run(self) -> list[bytes]:
        pyvips = self.pyvips
        specs = with_preview(self.specs)
        size = read_dimensions(self.data)
        targets = [spec.resized_size(size) for spec in specs]
        order = sorted(range(len(specs)), key=lambda i: -math.prod(targets[i]))
        sizes = list(dict.fromkeys(targets[i] for i in order))
        # Each size is resized from the smallest larger size at least twice as big, else the largest.
        base_of: dict[tuple[int, int], tuple[int, int] | None] = {sizes[0]: None}
        for n, target in enumerate(sizes[1:], start=1):
            bigger = [s for s in sizes[:n] if s[0] >= 2 * target[0] and s[1] >= 2 * target[1]]
            base_of[target] = min(bigger) if bigger else sizes[0]
        uses = {s: targets.count(s) + list(base_of.values()).count(s) for s in sizes}
        frames = {}
        for target in sizes:
            base = base_of[target]
            if base is None:
                picture = pyvips.Image.thumbnail_buffer(self.data, target[0], height=target[1], size="force")
            else:
                source = frames[base]
                picture = source.resize(
                    target[0] / source.width, vscale=target[1] / source.height, kernel="lanczos3"
                )
            if (picture.width, picture.height) != target:
                raise RuntimeError(f"libvips made {picture.width}×{picture.height}, not {target}")
            frames[target] = picture.copy_memory() if uses[target] > 1 else picture
        outputs: list[bytes] = [b""] * len(specs)
        for i in order:
            outputs[i] = self.encode(self.frame(frames[targets[i]], specs[i]), specs[i])
        return outputs

    def frame(self, picture, spec: OutputSpec):
        if spec.fit == "fill" and (picture.width, picture.height) != (spec.width, spec.height):
            left = place_window(picture.width, spec.width, 0.5)
            top = place_window(picture.height, spec.height, 0.5)
            return picture.crop(left, top, spec.width, spec.height)
        if spec.fit == "pad" and (picture.width, picture.height) != (spec.width, spec.height):
            x, y = (spec.width - picture.width) // 2, (spec.height - picture.height) // 2
            return picture.embed(
                x,
                y,
                spec.width,
                spec.height,
                extend="background",
                # A cut-out keeps its alpha band, which the background needs a value for too.
                background=list(colour_rgb(spec.background)) + [255] * (picture.bands - 3),
            )
        return picture

    def encode(self, picture, spec: OutputSpec) -> bytes:
        quality = spec.quality or rendering.DEFAULT_QUALITY.get(spec.format)
        if spec.format == "jpeg":
            return picture.jpegsave_buffer(
                Q=quality, optimize_coding=False, interlace=spec.progressive, subsample_mode="on", keep="none"
            )
        if spec.format == "webp":
            return picture.webpsave_buffer(Q=quality, effort=spec.webp_method, keep="none")
        if spec.format == "png":
            return picture.pngsave_buffer(compression=6, keep="none")
        raise ValueError(f"no libvips encoder for {spec.format} in this benchmark")


CONTENDERS = {"pixelmill": Pixelmill, "naive": NaivePillow, "libvips": Libvips, "floor": Floor}

"""The variant renderer: decode once, run the steps, resize in a cascade from largest to smallest, encode."""

from __future__ import annotations

import io
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image, ImageCms

from jobs.errors import InternalError, PermanentError, StepError
from jobs.imaging import (
    DEFAULT_MAX_PIXELS,
    EXTENT_KEY,
    FOCUS_KEY,
    WHOLE_SOURCE,
    decode_image,
    decode_keeping_profile,
    fill_crop,
    read_dimensions,
    to_srgb,
)
from jobs.operations import NOT_MADE, Operation, OperationContext, Upscale, colour_rgb
from jobs.outputs import (
    LOSSY_FORMATS,
    OutputSpec,
    RuleViolation,
    check_rules,
    enlargement_of,
    not_made_reason,
)
from jobs.resampling import MODES, halve, resample

DEFAULT_QUALITY = {"jpeg": 85, "webp": 80, "avif": 60}
# The cascade (see render_outputs): each output is resampled with Lanczos-3 from the smallest picture
# already made that is at least this many times its size in both directions; where even that picture
# is twice as large again, a half-size level (jobs.resampling.halve, a box filter) is made first and
# kept for the outputs after it. So Lanczos never reads more than 4× the output's size along either
# axis, and the box filter only ever removes detail twice as fine as the output can show: libvips'
# gap of 2 (vips_resize). At 1.25 (Pillow's reducing_gap, which the renderer used before) the box
# filter's blur and aliasing reached real photos' outputs: least SSIM 0.981 on a 300×250 banner,
# where Lanczos from the decode gives 0.9997 (docs/performance.md, "Sharp on real photos").
CASCADE_FACTOR = 2.0
# A JPEG is decoded at a DCT scale (1/2, 1/4, 1/8: a box-like reduction of its own) only when that
# still leaves Lanczos this many times the largest output's size, as libvips' thumbnail does (its
# shrink-on-load "leaves at least a factor of two for the final resize step"). Decoding just above
# the output's size took a 2000×2000 zoom of a real photo to SSIM 0.983.
DRAFT_MARGIN = 2.0

# Below this quality JPEG and WebP show blocks and smears at any size: past it the output is flagged
# for a person to decide (a smaller box, a simpler picture, a larger budget) instead of shipped ugly.
BUDGET_QUALITY_FLOOR = 30
# Decoding converts every input to sRGB, so every output says so (588 bytes): untagged pictures are shown
# unmanaged by some browsers (Firefox's default), oversaturated on wide-gamut screens.
SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# The dashboard's preview: one more output of every render (the same 320 px WebP as
# imaging.make_thumbnail), so the draft decode serves it and the cascade makes it cheaply.
PREVIEW_SPEC = OutputSpec("preview", 320, 320, "fit", "webp")


# A box as fractions of a picture: (left, top, right, bottom).
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class RenderedOutput:
    spec: OutputSpec
    data: bytes
    width: int
    height: int
    quality: int | None = None
    violations: tuple[RuleViolation, ...] = ()
    # The part of the source this output shows (see source_window), so a comparison can line the two up.
    window: Box = WHOLE_SOURCE


@dataclass
class PipelineResult:
    outputs: list[RenderedOutput]
    preview: bytes
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[dict[str, str]] = field(default_factory=list)  # left by steps: {"code": "kept_whole", ...}


def required_size(source_size: tuple[int, int], specs: Sequence[OutputSpec]) -> tuple[int, int]:
    """The smallest source size (same aspect) that still serves every spec without upsampling."""
    sw, sh = source_size
    scale = 0.0
    for spec in specs:
        rw, _ = spec.resized_size(source_size)
        scale = max(scale, rw / sw)
    scale = min(scale, 1.0)
    return max(1, math.ceil(sw * scale)), max(1, math.ceil(sh * scale))


def render_outputs(
    image: Image.Image,
    specs: Sequence[OutputSpec],
    *,
    release_source: bool = False,
    profile: bytes | None = None,
) -> list[RenderedOutput]:
    """Every spec from one image, each resized picture made once however many specs share it.

    Larger targets first; each resize starts from the smallest picture made so far that is still at
    least CASCADE_FACTOR× the target (the decode, a full-size output, or a half-size level made for
    the purpose), so small variants never pay for filtering the large ones, and Lanczos-3 keeps the
    quality. A `fill` output resamples only the window it keeps, not the whole picture.

    Memory: an intermediate is dropped once no output left needs it, and with `release_source`
    the source's pixels too (the image is closed; its size and info stay readable), so a 24 MP
    decode is gone before the largest output is padded and encoded.

    With `profile` (the ICC profile `image`'s colours are in, from `decode_keeping_profile`), every
    picture resampled from `image` itself is converted to sRGB as it is made, and those made from it
    need nothing more: the lcms pass runs over the largest output (or half-size level), not the decode,
    and before padding, so a canvas keeps its exact colour.
    """
    if image.mode not in MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    order = sorted(range(len(specs)), key=lambda i: -math.prod(specs[i].resized_size(image.size)))
    frames: list[Image.Image] = [image]
    keys = [picture_key(spec, image.size) for spec in specs]
    # JPEG and WebP twins of one variant share their pixels; only the encode differs. A picture is
    # dropped once its last spec is encoded, so a large padded canvas is not held to the end.
    waiting = Counter(keys)
    pictures: dict[tuple[object, ...], Image.Image] = {}
    results: dict[int, RenderedOutput] = {}
    for position, index in enumerate(order):
        spec, key = specs[index], keys[index]
        picture = pictures.get(key)
        if picture is None:
            # The specs still to make a picture for: a twin of this one (same key) will reuse it.
            remaining = [
                specs[i] for i in order[position + 1 :] if keys[i] != key and keys[i] not in pictures
            ]
            target = spec.resized_size(image.size)
            if spec.fit == "fill" and target != (spec.width, spec.height):
                picture = fill_window(image, frames, target, spec, profile)
                release_frames(frames, remaining, image, pictures, release_source)
            else:
                scaled = scaled_frame(frames, target, profile)
                # The smaller pictures made from this one are made now, so it can go as soon as it is
                # framed: a 24 MP decode's 2000 px zoom is not held through its canvas's WebP encode.
                for later in remaining:
                    later_target = later.resized_size(image.size)
                    if later.fit != "fill" and base_for(frames, later_target) is scaled:
                        scaled_frame(frames, later_target, profile)
                # Before the padded canvas is made, so the decode and the canvas are never both held.
                release_frames(frames, remaining, image, pictures, release_source, keep=scaled)
                picture = frame(to_srgb(scaled, profile) if scaled is image else scaled, spec, image.info)
                del scaled
                # The source may have been what was framed: it goes before the canvas is encoded.
                release_frames(frames, remaining, image, pictures, release_source, keep=picture)
            pictures[key] = picture
        data, quality = encode_within_budget(picture, spec)
        violations = check_rules(spec, picture.width, picture.height, len(data), quality, image.size)
        window = source_window(spec, image.size, image.info)
        results[index] = RenderedOutput(
            spec, data, picture.width, picture.height, quality, violations, window
        )
        waiting[key] -= 1
        if not waiting[key]:
            del pictures[key]
        del picture
    return [results[i] for i in range(len(specs))]


def release_frames(
    frames: list[Image.Image],
    remaining: Sequence[OutputSpec],
    source: Image.Image,
    pictures: Mapping[tuple[object, ...], Image.Image],
    release_source: bool,
    keep: Image.Image | None = None,
) -> None:
    """Forget the intermediates no remaining spec will resize from (a frame added later is only ever
    a smaller candidate, so one not chosen now is never chosen again); close the source if allowed
    and neither a remaining spec nor `keep` (a picture still to be framed or encoded) is it."""
    needed = {id(base_for(frames, spec.resized_size(source.size))) for spec in remaining}
    frames[1:] = [candidate for candidate in frames[1:] if id(candidate) in needed]
    in_use = id(source) in needed or source is keep or any(picture is source for picture in pictures.values())
    if release_source and not in_use:
        source.close()


def base_for(frames: Sequence[Image.Image], target: tuple[int, int]) -> Image.Image:
    """The picture a `target`-sized output is made from (or its half-size levels are): one already
    that size, or the cascade's base."""
    for candidate in frames:
        if candidate.size == target:
            return candidate
    return cascade_base(frames, target)


def picture_key(spec: OutputSpec, source: tuple[int, int]) -> tuple[object, ...]:
    """Specs with equal keys get identical pixels."""
    background = spec.background if spec.fit == "pad" else None
    return (spec.resized_size(source), spec.fit, spec.width, spec.height, background)


def cascade_base(frames: Sequence[Image.Image], target: tuple[int, int]) -> Image.Image:
    """The smallest picture at least CASCADE_FACTOR× `target`, or the original."""
    base = frames[0]
    for candidate in frames[1:]:
        big_enough = (
            candidate.width >= target[0] * CASCADE_FACTOR and candidate.height >= target[1] * CASCADE_FACTOR
        )
        if big_enough and candidate.width < base.width:
            base = candidate
    return base


def resampling_base(
    frames: list[Image.Image], target: tuple[int, int], profile: bytes | None = None
) -> Image.Image:
    """`base_for`, halved (and each half kept in `frames`) while the half is still CASCADE_FACTOR×
    `target`: the box filter does the cheap part of a large reduction, once for every output. A half
    of the source (`frames[0]`, in the colours of `profile`) is converted to sRGB as it is made."""
    base = base_for(frames, target)
    while base.size != target:
        half = (round(base.width / 2), round(base.height / 2))
        if half[0] < target[0] * CASCADE_FACTOR or half[1] < target[1] * CASCADE_FACTOR:
            break
        base = to_srgb(halve(base), profile) if base is frames[0] else halve(base)
        frames.append(base)
    return base


def scaled_frame(
    frames: list[Image.Image], target: tuple[int, int], profile: bytes | None = None
) -> Image.Image:
    """The whole picture at `target` size, made once and kept as a base for smaller outputs; in sRGB
    unless it is the source itself (see render_outputs)."""
    base = resampling_base(frames, target, profile)
    if base.size == target:
        return base
    resized = resample(base, target)
    if base is frames[0]:
        resized = to_srgb(resized, profile)
    resized.info = dict(frames[0].info)
    frames.append(resized)
    return resized


def fill_window(
    image: Image.Image,
    frames: list[Image.Image],
    target: tuple[int, int],
    spec: OutputSpec,
    profile: bytes | None = None,
) -> Image.Image:
    """A `fill` output: the window around the focus, resampled straight to the box, in sRGB.

    Resampling only the window (a fractional box, filtered with the pixels around it) gives the
    pixels a resize-then-crop would, without filtering the columns or rows the crop throws away.
    """
    left, top, _, _ = fill_crop(target, (spec.width, spec.height), image.info)
    base = resampling_base(frames, target, profile)
    if base.size == target:
        window = base.crop((left, top, left + spec.width, top + spec.height))
    else:
        sx, sy = base.width / target[0], base.height / target[1]
        box = (left * sx, top * sy, (left + spec.width) * sx, (top + spec.height) * sy)
        window = resample(base, (spec.width, spec.height), box)
    return to_srgb(window, profile) if base is frames[0] else window


def output_frame(spec: OutputSpec, size: tuple[int, int], hints: Mapping[str | tuple[int, int], Any]) -> Box:
    """The part of a `size` picture that `spec`'s output shows, as fractions of it: the window a `fill`
    keeps (fill_window's), or past 0..1 where `pad` adds a border (frame's)."""
    target = spec.resized_size(size)
    box = (spec.width, spec.height)
    if spec.fit == "fill" and target != box:
        left, top, right, bottom = fill_crop(target, box, hints)
        return left / target[0], top / target[1], right / target[0], bottom / target[1]
    if spec.fit == "pad" and target != box:
        x, y = (spec.width - target[0]) // 2, (spec.height - target[1]) // 2
        return -x / target[0], -y / target[1], (spec.width - x) / target[0], (spec.height - y) / target[1]
    return WHOLE_SOURCE


def source_window(spec: OutputSpec, size: tuple[int, int], hints: Mapping[str | tuple[int, int], Any]) -> Box:
    """The part of the source that `spec`'s output of a processed `size` picture shows, as fractions of the
    source: the output's frame carried back through the steps' crops and canvases (the extent hint)."""
    left, top, right, bottom = hints.get(EXTENT_KEY, WHOLE_SOURCE)
    frame_left, frame_top, frame_right, frame_bottom = output_frame(spec, size, hints)
    width, height = right - left, bottom - top
    return (
        round(left + frame_left * width, 6),
        round(top + frame_top * height, 6),
        round(left + frame_right * width, 6),
        round(top + frame_bottom * height, 6),
    )


def frame(image: Image.Image, spec: OutputSpec, hints: Mapping[str | tuple[int, int], Any]) -> Image.Image:
    """Crop (fill) around the focus, or pad to the exact box; fit passes through."""
    if spec.fit == "fill" and image.size != (spec.width, spec.height):
        return image.crop(fill_crop(image.size, (spec.width, spec.height), hints))
    if spec.fit == "pad" and image.size != (spec.width, spec.height):
        if spec.background == "transparent":
            canvas = Image.new("RGBA", (spec.width, spec.height), (0, 0, 0, 0))
        else:
            canvas = Image.new("RGB", (spec.width, spec.height), colour_rgb(spec.background))
        offset = ((spec.width - image.width) // 2, (spec.height - image.height) // 2)
        if image.mode != "RGBA":
            canvas.paste(image, offset)
        elif canvas.mode == "RGBA":
            canvas.alpha_composite(image, offset)
        else:
            canvas.paste(image, offset, image)
        return canvas
    return image


def flatten(image: Image.Image, background: str) -> Image.Image:
    """RGBA onto an opaque colour, for formats without alpha."""
    if image.mode != "RGBA":
        return image.convert("RGB") if image.mode != "RGB" else image
    colour = colour_rgb(background) if background != "transparent" else (255, 255, 255)
    canvas = Image.new("RGB", image.size, colour)
    canvas.paste(image, (0, 0), image)
    return canvas


def encode(image: Image.Image, spec: OutputSpec) -> bytes:
    """Encode with the spec's settings; only pixels and an sRGB tag go out (no EXIF, GPS, XMP)."""
    quality = spec.quality or DEFAULT_QUALITY.get(spec.format)
    buffer = io.BytesIO()
    if spec.format == "jpeg":
        # https://pillow.readthedocs.io/en/stable/handbook/image-file-formats.html#jpeg-saving
        flatten(image, spec.background).save(
            buffer,
            "JPEG",
            quality=quality,
            optimize=False,
            progressive=spec.progressive,
            subsampling="4:2:0",
            icc_profile=SRGB_PROFILE,
        )
    elif spec.format == "webp":
        image.save(buffer, "WEBP", quality=quality, method=spec.webp_method, icc_profile=SRGB_PROFILE)
    elif spec.format == "png":
        image.save(buffer, "PNG", optimize=False, compress_level=6, icc_profile=SRGB_PROFILE)
    else:
        # One thread: a worker is one core's worth of work (a worker runs per core).
        image.save(
            buffer, "AVIF", quality=quality, speed=spec.avif_speed, max_threads=1, icc_profile=SRGB_PROFILE
        )
    return buffer.getvalue()


def encode_within_budget(image: Image.Image, spec: OutputSpec) -> tuple[bytes, int | None]:
    """`encode`, and the quality used. Over the spec's byte budget, the highest quality that fits, found
    by bisection (about six encodes from q85); when even the floor does not fit, the floor's encoding,
    the smallest we are willing to ship, which check_rules then flags."""
    quality = spec.quality or DEFAULT_QUALITY.get(spec.format)
    data = encode(image, spec)
    budget = spec.max_bytes
    if budget is None or len(data) <= budget or spec.format not in LOSSY_FORMATS or quality is None:
        return data, quality
    if quality <= BUDGET_QUALITY_FLOOR:
        return data, quality  # an admin who asked for this little quality gets no less
    low, high = BUDGET_QUALITY_FLOOR, quality - 1
    fitting: tuple[bytes, int] | None = None
    lowest_tried = (data, quality)
    while low <= high:
        middle = (low + high) // 2
        candidate = encode(image, replace(spec, quality=middle))
        if len(candidate) <= budget:
            fitting, low = (candidate, middle), middle + 1
        else:
            lowest_tried, high = (candidate, middle), middle - 1
    return fitting or lowest_tried


def draft_size(
    source: bytes,
    steps: Sequence[Operation],
    specs: Sequence[OutputSpec],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int] | None:
    """The least decoded size of `source` that still serves every output and the preview at full
    quality once `steps` have run, DRAFT_MARGIN× what they need; None when a step (a crop) makes that
    unknowable."""
    # Only a JPEG decodes at a smaller scale. Asking another format's upright size may decode all of
    # it: a PNG can keep its EXIF after the pixels, and the pipeline then decoded a 12 MP PNG twice.
    if not source.startswith(b"\xff\xd8\xff"):
        return None
    scales = [op.source_scale() for op in steps]
    if None in scales:
        return None
    factor = math.prod(scales)  # type: ignore[arg-type]
    # The header is enough to know the size; decode_image then picks the DCT scale.
    width, height = read_dimensions(source, max_pixels=max_pixels)
    # Outputs are cut from the processed image, which an upscale makes larger than the source:
    # size the processed image first, then the source that produces it.
    processed = (max(1, round(width / factor)), max(1, round(height / factor)))
    needed = required_size(processed, [*specs, PREVIEW_SPEC])
    draft_width = min(width, max(1, math.ceil(needed[0] * factor * DRAFT_MARGIN)))
    draft_height = min(height, max(1, math.ceil(needed[1] * factor * DRAFT_MARGIN)))
    return draft_width, draft_height


def run_pipeline(
    source: bytes,
    steps: Sequence[Operation],
    specs: Sequence[OutputSpec],
    *,
    context: OperationContext | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_step: Callable[[str], None] | None = None,
    focus: tuple[float, float] | None = None,
) -> PipelineResult:
    """Decode once (shrink-on-load to what the outputs need), apply the steps, render every spec.

    `focus` (normalised x, y of the upright picture; a marketer's click) replaces subject detection.
    """
    context = context or OperationContext.default()
    timings: dict[str, float] = {}
    step = "decode"

    def timed(name: str, started: float) -> None:
        timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - started) * 1000, 1)

    try:
        if on_step:
            on_step(step)
        started = time.perf_counter()
        min_size = draft_size(source, steps, specs, max_pixels)
        profile: bytes | None = None
        if steps:
            image = decode_image(source, max_pixels=max_pixels, min_size=min_size)
        else:
            # Nothing reads the colours before the outputs are resized: convert those, not the decode.
            image, profile = decode_keeping_profile(source, max_pixels=max_pixels, min_size=min_size)
        timed("decode", started)
        if focus is not None:
            # Hints are the only thing `info` holds after decoding; the chosen point replaces them all.
            image.info = {FOCUS_KEY: (float(focus[0]), float(focus[1]))}
        for operation in steps:
            step = operation.name
            if on_step:
                on_step(step)
            started = time.perf_counter()
            image = operation.apply(image, context)
            timed(step, started)
        step = "render"
        if on_step:
            on_step(step)
        started = time.perf_counter()
        specs = specs_worth_making(specs, image.size, context)
        # The preview is one more output, so it is cut from a small intermediate too.
        *outputs, preview = render_outputs(
            image, [*specs, PREVIEW_SPEC], release_source=True, profile=profile
        )
        timed("render", started)
    except StepError as error:
        error.step = step
        raise
    except (OSError, SyntaxError, ValueError, ArithmeticError, LookupError, TypeError, RuntimeError) as exc:
        # Past the decode (which refuses bad files itself) these are our bugs or a library's: they would
        # fail the same way again, so one plain sentence and a ref, never the library's own words.
        internal = InternalError.from_exception(exc, doing=f"processing this image (step {step})")
        internal.step = step
        raise internal from exc
    return PipelineResult(
        outputs=outputs,
        preview=preview.data,
        width=image.width,
        height=image.height,
        timings=timings,
        notes=list(context.notes),
    )


def specs_worth_making(
    specs: Sequence[OutputSpec], size: tuple[int, int], context: OperationContext
) -> list[OutputSpec]:
    """The specs a `size` picture does not have to be enlarged past MAX_ENLARGEMENT_MADE for; each
    other one leaves a "not_made" note saying why. None left: the photo is refused as too small."""
    made = []
    for spec in specs:
        reason = not_made_reason(spec, size)
        if reason is None:
            made.append(spec)
        else:
            context.note(NOT_MADE, reason, output=spec.name)
    if specs and not made:
        smallest = min(specs, key=lambda spec: enlargement_of(spec, size))
        raise PermanentError(
            "The photo is too small for every output of this recipe: even "
            f"{smallest.name} {smallest.width}×{smallest.height} would enlarge it "
            f"{enlargement_of(smallest, size):.1f}× into a blur. Use a larger photo, or add an Upscale "
            "step to the recipe.",
            code="too_small",
        )
    return made


# Tracing decodes and steps at most this large: the geometry is in fractions, so a small copy finds the same
# windows (the subject detectors work on a small copy anyway) at a fraction of the cost.
TRACE_LONG_SIDE = 1024


def trace_windows(
    source: bytes,
    steps: Sequence[Operation],
    specs: Sequence[OutputSpec],
    *,
    context: OperationContext | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    focus: tuple[float, float] | None = None,
) -> dict[str, Box]:
    """Each spec's source window (by name), found again without rendering: for outputs stored before the
    renderer recorded it. Run on a small copy with local steps, so it may differ from a provider's by a little."""
    limit = (TRACE_LONG_SIDE, TRACE_LONG_SIDE)
    image = decode_image(source, max_pixels=max_pixels, min_size=limit)
    if max(image.size) > TRACE_LONG_SIDE:
        image.thumbnail(limit, Image.Resampling.BILINEAR)
    image.info = {FOCUS_KEY: (float(focus[0]), float(focus[1]))} if focus is not None else {}
    context = context or OperationContext.default()
    for operation in steps:
        # An upscale moves nothing (hints are fractions) and would only make the copy larger.
        if not isinstance(operation, Upscale):
            image = operation.apply(image, context)
    return {spec.name: source_window(spec, image.size, image.info) for spec in specs}

"""Every ready recipe on every real photo: exact, decodable outputs in the photo's own colours, or a plain refusal."""

from __future__ import annotations

import functools
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter

from corpus.contact_sheet import kind_of
from dashboard.ready_recipes import READY_RECIPES, ready_pipeline
from jobs.errors import PermanentError
from jobs.imaging import decode_image, decode_keeping_profile
from jobs.operations import Canvas, OperationContext
from jobs.operations.cutout import content_box
from jobs.outputs import MAX_ENLARGEMENT_MADE, OutputSpec
from jobs.rendering import render_outputs, run_pipeline

RECIPES = [recipe["slug"] for recipe in READY_RECIPES]
FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG", "avif": "AVIF"}
ENLARGED = re.compile(r"enlarged (\d+(?:\.\d+)?)×")
# Steps that change pixels on purpose (the sale banner's badge and logo): colour is measured around them.
OVERLAYS = ("text_overlay", "watermark")
# Colours are compared on pictures this long, where JPEG noise and resampling average out.
WORK_SIDE = 128
COLOUR_SIDE = 1024
MAX_COLOUR_SHIFT = 6
# What a marketer should never read in a refusal: exception names and the libraries' own words.
JARGON = re.compile(
    r"\w+Error\b|Exception|Traceback|errno|numpy|\barray\b|\bshape\b|dtype|histogram|cykooz|\bPIL\b|"
    r"NoneType|attribute|tuple|index|buffer|\bcodec\b|out of the image bounds",
    re.IGNORECASE,
)


@dataclass
class RenderedPicture:
    spec: OutputSpec
    size: tuple[int, int]
    format: str | None
    small: np.ndarray  # the output flattened on white, WORK_SIDE long, float RGB


@dataclass
class RecipeRun:
    seconds: float
    outputs: list[RenderedPicture] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    error: BaseException | None = None


@functools.cache
def run_ready_recipe(path: Path, slug: str) -> RecipeRun:
    """One run per photo and recipe, shared by the tests below; only small copies of the outputs are kept."""
    steps, specs = ready_pipeline(slug)
    started = time.perf_counter()
    try:
        result = run_pipeline(path.read_bytes(), steps, specs)
    except Exception as error:  # every kind is judged by the test, not here
        return RecipeRun(time.perf_counter() - started, error=error)
    run = RecipeRun(time.perf_counter() - started, notes=list(result.notes))
    for output in result.outputs:
        with Image.open(io.BytesIO(output.data)) as opened:
            opened.load()
            run.outputs.append(
                RenderedPicture(output.spec, opened.size, opened.format, small_picture(opened))
            )
    return run


def small_picture(image: Image.Image) -> np.ndarray:
    scale = WORK_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(on_white(image).resize(size, Image.Resampling.BOX), dtype=np.float32)


def on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, (0, 0), image)
        return canvas
    return image.convert("RGB")


def outcome(run: RecipeRun) -> tuple[str, str, str]:
    """(what happened, a key to group it by, what a person would read)."""
    if run.error is None:
        if not run.notes:
            return "succeeded", "", ""
        # Grouped by the reason's opening words: the figures inside ("47% of them") vary photo to photo.
        kind = kind_of(run.notes)  # as on the contact sheet
        messages = [note["message"] for note in run.notes]
        return kind, " ".join(messages[0].split()[:6]), "; ".join(messages)
    if isinstance(run.error, PermanentError):
        return "refused", run.error.code, run.error.message
    return "crashed", type(run.error).__name__, f"{type(run.error).__name__}: {run.error}"


@pytest.mark.parametrize("slug", RECIPES)
def test_a_ready_recipe_renders_every_output_exactly_or_refuses_plainly(real_photo, slug, recipe_outcomes):
    run = run_ready_recipe(real_photo["path"], slug)
    recipe_outcomes.setdefault(slug, {})[real_photo["id"]] = (*outcome(run), run.seconds)
    if run.error is not None:
        assert isinstance(run.error, PermanentError), f"not a refusal: {outcome(run)[2]}"
        message = run.error.message
        assert message and not JARGON.search(message), f"not plain: {message!r}"
        return
    # An output the photo would have to be enlarged past 4× for is left out, and a note says which and why.
    not_made = {note["output"]: note["message"] for note in run.notes if note["code"] == "not_made"}
    for message in not_made.values():
        assert float(ENLARGED.search(message).group(1)) > MAX_ENLARGEMENT_MADE, message
    made = [output.spec.name for output in run.outputs]
    assert made == [spec.name for spec in ready_pipeline(slug)[1] if spec.name not in not_made]
    assert made, "a run that makes nothing is refused, not succeeded"
    for output in run.outputs:
        spec = output.spec
        assert output.format == FORMATS[spec.format], spec.name
        if spec.fit in ("fill", "pad"):
            assert output.size == (spec.width, spec.height), spec.name
        else:
            assert output.size[0] <= spec.width and output.size[1] <= spec.height, spec.name


@pytest.mark.parametrize("slug", RECIPES)
def test_a_ready_recipe_keeps_the_photos_colour(real_photo, slug):
    """Each output's mean colour is within MAX_COLOUR_SHIFT levels per channel of the part of the photo it
    shows, away from the badge and logo; cut-outs are left out, their backdrop is replaced on purpose."""
    if min(real_photo["stored_size"]) < 4:
        pytest.skip("a picture of a pixel or two has no region whose colour could be compared")
    run = run_ready_recipe(real_photo["path"], slug)
    if run.error is not None:
        pytest.skip(f"no outputs to compare: {outcome(run)[2]}")
    source = decode_image(real_photo["path"].read_bytes(), min_size=(COLOUR_SIDE, COLOUR_SIDE))
    # Means and where the steps crop or draw do not depend on size; a smaller photo keeps the test quick.
    source.thumbnail((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX)
    steps = ready_pipeline(slug)[0]
    overlays = overlay_mask(source, steps) if any(step.name in OVERLAYS for step in steps) else None
    shifts: dict[str, float] = {}
    for output in run.outputs:
        if output.spec.fit == "pad":
            region = placed_photo(output.small, source, steps, run)
            if region is not None and min(region.shape[:2]) >= 4:
                shifts[output.spec.name] = colour_shift(on_white(source), region, None)
        else:
            keep = None
            if overlays is not None:
                drawn = overlays.resize(output.small.shape[1::-1], Image.Resampling.BOX)
                # A pixel's margin: resampling spreads the badge's edge into its neighbours.
                keep = np.asarray(drawn.filter(ImageFilter.MaxFilter(3))) == 0
                if keep.mean() < 0.2:
                    continue  # the badge and logo cover nearly all of a tiny picture
            shifts[output.spec.name] = colour_shift(on_white(source), output.small, keep)
    if not shifts:
        pytest.skip("every output is a cut-out on a new backdrop")
    worst = max(shifts, key=shifts.__getitem__)
    assert shifts[worst] <= MAX_COLOUR_SHIFT, (
        f"{worst} moved the mean colour {shifts[worst]:.1f} levels: {shifts}"
    )


def colour_shift(source: Image.Image, output: np.ndarray, keep: np.ndarray | None) -> float:
    """Largest per-channel difference between the output's mean colour and that of the window of `source`
    it shows. The window is found, not assumed: every output of the ready recipes spans the (cropped)
    photo along one side, so it slides along the other, placed where the brightness pattern correlates
    best (correlation ignores a shift in colour or contrast, so a recoloured output is still found)."""
    height, width = output.shape[:2]
    cover = max(width / source.width, height / source.height)
    size = (max(width, round(source.width * cover)), max(height, round(source.height * cover)))
    photo = np.asarray(source.resize(size, Image.Resampling.BOX), dtype=np.float32)
    keep = np.ones((height, width), bool) if keep is None else keep
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    target = (output @ luma)[keep]
    target -= target.mean()
    windows = sliding_window_view(photo @ luma, (height, width))[..., keep]
    windows = windows - windows.mean(axis=-1, keepdims=True)
    score = (windows @ target) / (np.sqrt((windows * windows).sum(axis=-1) * (target @ target)) + 1e-3)
    top, left = np.unravel_index(np.argmax(score), score.shape)
    shown = photo[top : top + height, left : left + width][keep]
    return float(np.abs(shown.mean(axis=0) - output[keep].mean(axis=0)).max())


def overlay_mask(source: Image.Image, steps: list) -> Image.Image:
    """Where the overlay steps draw, on a picture the size they draw on: the other steps run for real."""
    context = OperationContext.default()
    picture, blank = source, None
    for step in steps:
        if step.name not in OVERLAYS:
            picture = step.apply(picture, context)
            continue
        if blank is None:
            blank = [Image.new("RGB", picture.size, shade) for shade in ((0, 0, 0), (255, 255, 255))]
        blank = [step.apply(shade, context) for shade in blank]
    black, white = (np.asarray(layer.convert("RGB")) for layer in blank)
    return Image.fromarray((black.any(axis=-1) | (white < 255).any(axis=-1)).astype(np.uint8) * 255)


def placed_photo(output: np.ndarray, source: Image.Image, steps: list, run: RecipeRun) -> np.ndarray | None:
    """The part of a pad output that holds the whole photo, when the pipeline kept it whole (a note says
    so) and the canvas did not trim it; None otherwise (a cut-out shows a new backdrop on purpose)."""
    canvas = next((step for step in steps if isinstance(step, Canvas)), None)
    kept_whole = any(note["code"] != "not_made" for note in run.notes)
    if not kept_whole or canvas is None or (canvas.trim and content_box(source) is not None):
        return None
    width, height = canvas.frame_for(source.size)
    scale = min(output.shape[1] / width, output.shape[0] / height)
    w, h = source.width * scale, source.height * scale
    left, top = (output.shape[1] - w) / 2, (output.shape[0] - h) / 2
    # One work pixel inside, clear of the edge the resize blends with white.
    return output[round(top) + 1 : round(top + h) - 1, round(left) + 1 : round(left + w) - 1]


@pytest.mark.photos_with_profile
def test_a_photo_with_a_wide_gamut_profile_renders_the_colours_of_converting_first(real_photo):
    """The renderer with no steps converts its outputs to sRGB, not the decode; on real photos with a
    profile (Adobe RGB, Display P3, ...) every output matches converting first: a fraction of a level on average, 4 at most for 99% of values (saturated detail clips to sRGB before or after Lanczos)."""
    data = real_photo["path"].read_bytes()
    _, profile = decode_keeping_profile(data)
    if profile is None:
        pytest.skip("its profile is sRGB: nothing to convert")
    _, specs = ready_pipeline("social-ads-pack")
    lossless = [OutputSpec(spec.name, spec.width, spec.height, spec.fit, "png") for spec in specs]
    deferred = run_pipeline(data, [], lossless).outputs
    # Compared output by output: the ones this small photo would be enlarged past 4× for are made by neither.
    first = render_outputs(decode_image(data), [output.spec for output in deferred])
    for later, converted in zip(deferred, first, strict=True):
        a = np.asarray(Image.open(io.BytesIO(later.data)).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(io.BytesIO(converted.data)).convert("RGB"), dtype=np.int16)
        difference = np.abs(a - b)
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 4, later.spec.name
        assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 0.3, later.spec.name

"""Smart crop keeps the subject: on real photos with a hand-marked subject, and where a marketer chose the point."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard.ready_recipes import READY_RECIPES
from jobs.imaging import FOCUS_KEY, decode_image, fill_crop, register_heif
from jobs.operations import OperationContext, SmartCrop, build_operation
from jobs.operations import saliency as saliency_module
from jobs.operations.saliency import salient_subject
from jobs.outputs import OutputSpec
from jobs.rendering import draft_size, run_pipeline

from . import images

CONTEXT = OperationContext.default()
RECIPES = {recipe["slug"]: recipe for recipe in READY_RECIPES}
# Boxes beyond the ready recipes' own, run after the Social ads pack's steps: a wide skyscraper ad and
# a thin leaderboard are where a subject is most easily cut.
EXTRA_BOXES = [(160, 600), (970, 90)]
KEPT_SHARE = 0.9


def recipe_cases() -> list[tuple[str, list, list[OutputSpec]]]:
    cases = []
    for slug in ("social-ads-pack", "sale-banner"):
        recipe = RECIPES[slug]
        steps = [build_operation(name, params) for name, params in recipe["steps"]]
        specs = [
            OutputSpec.from_dict(
                {"name": o["name"], "width": o["width"], "height": o["height"], "fit": "fill"}
            )
            for o in recipe["outputs"]
            if o["fit"] == "fill" and not o["name"].endswith("-webp")
        ]
        if slug == "social-ads-pack":
            specs += [OutputSpec(f"extra-{w}x{h}", w, h, "fill") for w, h in EXTRA_BOXES]
        cases.append((slug, steps, [OutputSpec(s.name, s.width, s.height, "fill", "png") for s in specs]))
    return cases


def processed_with_offset(
    source: bytes, steps: list, specs: list[OutputSpec]
) -> tuple[Image.Image, tuple[int, int]]:
    """What run_pipeline renders from (same draft decode, same steps), and where it sits in the decode."""
    image = decode_image(source, min_size=draft_size(source, steps, specs))
    offset = (0, 0)
    for step in steps:
        if isinstance(step, SmartCrop):
            crop, _ = step.plan(image)
            offset = (offset[0] + crop[0], offset[1] + crop[1])
        size = image.size
        image = step.apply(image, CONTEXT)
        assert isinstance(step, SmartCrop) or image.size == size  # only smart_crop moves the picture
    return image, offset


def source_window(processed: Image.Image, offset: tuple[int, int], spec: OutputSpec) -> tuple[float, ...]:
    """The part of the decoded photo the `fill` output shows."""
    target = spec.resized_size(processed.size)
    left, top, right, bottom = fill_crop(target, (spec.width, spec.height), processed.info)
    sx, sy = processed.width / target[0], processed.height / target[1]
    return (offset[0] + left * sx, offset[1] + top * sy, offset[0] + right * sx, offset[1] + bottom * sy)


def best_matching_shift(
    processed: Image.Image, offset: tuple[int, int], window: tuple[float, ...], output
) -> tuple[int, int]:
    """Which of the window and its neighbours (shifted by a tenth of its size) the rendered output shows."""
    actual = small_grey(Image.open(io.BytesIO(output.data)))
    width, height = window[2] - window[0], window[3] - window[1]
    errors = {}
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            box = (
                window[0] - offset[0] + dx * width / 10,
                window[1] - offset[1] + dy * height / 10,
                window[2] - offset[0] + dx * width / 10,
                window[3] - offset[1] + dy * height / 10,
            )
            if box[0] < -1 or box[1] < -1 or box[2] > processed.width + 1 or box[3] > processed.height + 1:
                continue
            expected = small_grey(processed.crop(tuple(round(v) for v in box)))
            errors[(dx, dy)] = float(np.abs(actual - expected).mean())
    return min(errors, key=errors.__getitem__)


def small_grey(image: Image.Image) -> np.ndarray:
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (128, 128, 128, 255)), image)
    return np.asarray(image.convert("L").resize((96, 96), Image.Resampling.BOX), dtype=np.float32)


def kept_share(box: tuple[float, ...], window: tuple[float, ...]) -> float:
    width = max(0.0, min(box[2], window[2]) - max(box[0], window[0]))
    height = max(0.0, min(box[3], window[3]) - max(box[1], window[1]))
    return width * height / ((box[2] - box[0]) * (box[3] - box[1]))


@pytest.mark.parametrize("slug", ["social-ads-pack", "sale-banner"])
def test_fill_outputs_keep_the_hand_marked_subject(real_photo, slug):
    """On corpus photos whose subject box was marked by hand, every fill output of the ready Social ads pack
    and Sale banner (and two extreme boxes) keeps at least 90% of the box whenever the box fits the window;
    and the rendered output is that window."""
    if not real_photo.get("subject"):
        pytest.skip("no hand-marked subject")
    register_heif()
    [(_, steps, specs)] = [case for case in recipe_cases() if case[0] == slug]
    source = real_photo["path"].read_bytes()
    processed, offset = processed_with_offset(source, steps, specs)
    decoded_size = decode_image(source, min_size=draft_size(source, steps, specs)).size
    x0, y0, x1, y1 = real_photo["subject"]
    box = (x0 * decoded_size[0], y0 * decoded_size[1], x1 * decoded_size[0], y1 * decoded_size[1])
    misses = {}
    for spec in specs:
        window = source_window(processed, offset, spec)
        fits = (
            box[2] - box[0] <= window[2] - window[0] + 0.5 and box[3] - box[1] <= window[3] - window[1] + 0.5
        )
        share = kept_share(box, window)
        if fits and share < KEPT_SHARE:
            misses[spec.name] = f"{share:.0%}"
    assert not misses, f"outputs that cut the subject: {misses}"

    # The renderer is checked to cut these windows on the originals; their variants only add decoding.
    if "variant" in real_photo["tags"]:
        return
    rendered = run_pipeline(source, steps, specs).outputs
    for output in rendered:
        window = source_window(processed, offset, output.spec)
        assert best_matching_shift(processed, offset, window, output) == (0, 0), output.spec.name


def test_a_small_subject_far_from_the_centre_is_found():
    """A small bright kite high on one side of a textured sky: the box is on it, not the sky's."""
    rng = np.random.default_rng(3)
    sky = np.zeros((400, 640, 3), dtype=np.float32)
    sky[...] = (40, 90, 170)
    sky += rng.normal(0, 6, sky.shape)
    sky[:, :80] = (235, 240, 245)  # a cloud along the left edge
    sky[100:130, 480:505] = (230, 40, 30)
    sky[130:140, 480:505] = (250, 210, 30)
    image = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    subject = salient_subject(image)
    x0, y0, x1, y1 = subject.box
    assert x0 >= 0.72 and x1 <= 0.82 and y0 >= 0.2 and y1 <= 0.4
    assert 480 / 640 <= subject.focus[0] <= 505 / 640


def test_a_subject_cut_apart_by_a_thin_line_is_boxed_whole(monkeypatch):
    """The strongest region (a cat's eye) inside the box of a weaker one it does not touch (the face around
    it, ringed off by a dark rim): the box holds the face, the focus stays on the eye."""
    saliency = np.zeros((100, 160), dtype=np.float32)
    saliency[35:90, 45:100] = 0.4  # the face: salient, but nowhere a seed
    saliency[27:48, 47:65] = 0.0  # the rim, three pixels wide
    saliency[30:45, 50:62] = 1.0  # the eye
    monkeypatch.setattr(saliency_module, "saliency_map", lambda image: saliency)
    subject = salient_subject(Image.new("RGB", (320, 200), (128, 128, 128)))
    assert subject.box == pytest.approx((45 / 160, 30 / 100, 100 / 160, 90 / 100))
    assert 50 / 160 <= subject.focus[0] <= 62 / 160 and 30 / 100 <= subject.focus[1] <= 45 / 100


def test_on_a_palette_picture_flat_patches_do_not_join_the_subject(monkeypatch):
    """A 256-colour picture (a GIF) makes the blurred flowers behind a ladybird flat patches salient enough to
    join it along a stem: the box is the ladybird alone. A full-colour photo with the same saliency keeps the
    usual, wider grow."""
    saliency = np.full((100, 160), 0.05, dtype=np.float32)
    saliency[40:50, 100:110] = 1.0  # the ladybird
    saliency[50:56, 103:107] = 0.3  # the stem
    saliency[56:95, 90:150] = 0.45  # the flowers, 15% of the picture
    monkeypatch.setattr(saliency_module, "saliency_map", lambda image: saliency)
    ladybird = (100 / 160, 40 / 100, 110 / 160, 50 / 100)
    palette = Image.new("RGB", (320, 200), (60, 140, 50)).quantize(256).convert("RGB")
    assert salient_subject(palette).box == pytest.approx(ladybird)
    photo = Image.fromarray(np.random.default_rng(5).integers(0, 256, (200, 320, 3), dtype=np.uint8))
    assert salient_subject(photo).box[3] == pytest.approx(95 / 100)


def test_a_chosen_focus_overrides_detection_and_centres_fill_windows():
    """A focus passed to the pipeline (a marketer's click) replaces detection: every fill window holds the
    point, centred on it when the picture allows."""
    scene = images.product_scene(1200, 600, centre=(0.8, 0.5), size=0.4)  # detection would pick this
    source = images.png(scene.image)
    steps = [build_operation("smart_crop", {})]
    specs = [OutputSpec("square", 300, 300, "fill", "png"), OutputSpec("tall", 200, 400, "fill", "png")]
    chosen = (0.3, 0.5)
    result = run_pipeline(source, steps, specs, focus=chosen)
    image = decode_image(source)
    image.info[FOCUS_KEY] = chosen
    processed = steps[0].apply(image, CONTEXT)
    assert processed.info[FOCUS_KEY] == chosen
    for spec, output in zip(specs, result.outputs, strict=True):
        target = spec.resized_size(processed.size)
        left, top, right, bottom = fill_crop(target, (spec.width, spec.height), processed.info)
        point = (chosen[0] * target[0], chosen[1] * target[1])
        assert left <= point[0] <= right and top <= point[1] <= bottom
        assert abs((left + right) / 2 - point[0]) <= 1 and abs((top + bottom) / 2 - point[1]) <= 1
        # The product at 0.8 is outside the window: the output shows the left of the picture.
        pixels = np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB")).astype(int)
        assert (pixels[..., 2] - pixels[..., 0] > 60).sum() < 0.01 * pixels.shape[0] * pixels.shape[1]


def test_a_chosen_focus_steers_a_smart_crop_with_an_aspect():
    scene = images.product_scene(1200, 600, centre=(0.8, 0.5), size=0.4)
    image = scene.image.copy()
    image.info[FOCUS_KEY] = (0.1, 0.5)
    result = build_operation("smart_crop", {"aspect": "1:1"}).apply(image, CONTEXT)
    crop, _ = SmartCrop(aspect="1:1").plan(image)
    assert result.size == (600, 600) and crop[0] == 0  # as far left as it goes, the product left out

"""Background removal never calls garbage a success: the cut-out gate, keeping a photo whole, real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from corpus.build import default_cache_dir, load_manifest
from jobs.errors import PermanentError
from jobs.imaging import decode_image, register_heif
from jobs.operations import OperationContext, build_operation
from jobs.operations.cutout import check_cutout, measure_cutout
from jobs.recipe_steps import RemoteStep
from tests.jobs import images

# The corpus runs at this size: the method works at ≤512 px anyway, and the whole run stays fast.
CORPUS_LONG_SIDE = 400


def studio_scene() -> tuple[Image.Image, Image.Image]:
    """A product on a studio sweep, and its true mask."""
    scene = images.product_scene(320, 240, backdrop="studio")
    return scene.image, Image.fromarray((scene.mask * 255).astype(np.uint8))


def test_the_gate_passes_a_clean_cut_out():
    image, mask = studio_scene()
    quality = check_cutout(image, mask)
    assert quality.main_pieces == 1.0 and quality.edge_contrast > 5


def test_the_gate_refuses_scattered_fragments_saying_how_scattered():
    image, _ = studio_scene()
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    rng = np.random.default_rng(3)
    for _ in range(40):  # fragments of every size, strewn over the picture
        x, y, r = rng.integers(0, 320), rng.integers(0, 240), rng.integers(2, 14)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    with pytest.raises(PermanentError) as error:
        check_cutout(image, mask)
    assert error.value.code == "unusable_cutout"
    assert "scattered fragments" in error.value.message and "largest piece" in error.value.message


@pytest.mark.parametrize(
    ("fill", "words"),
    [((0, 0, 2, 2), "almost nothing"), ((0, 0, 320, 240), "almost the whole picture")],
    ids=["nearly-empty", "nearly-full"],
)
def test_the_gate_refuses_a_mask_that_keeps_nearly_nothing_or_nearly_everything(fill, words):
    image, _ = studio_scene()
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle(fill, fill=255)
    with pytest.raises(PermanentError) as error:
        check_cutout(image, mask)
    assert error.value.code == "unusable_cutout" and words in error.value.message


def test_the_gate_refuses_a_cut_through_flat_backdrop():
    image, _ = studio_scene()
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((20, 20, 110, 110), fill=255)  # a disc of empty backdrop
    assert measure_cutout(image, mask).edge_contrast < 3.5
    with pytest.raises(PermanentError, match="flat parts of the picture"):
        check_cutout(image, mask)


def test_if_unsuitable_is_validated_like_every_param():
    assert build_operation("remove_background", {}).params()["if_unsuitable"] == "refuse"
    assert build_operation("remove_background", {"if_unsuitable": "Keep"}).params()["if_unsuitable"] == "keep"
    with pytest.raises(ValueError, match="'if_unsuitable' must be one of refuse, keep"):
        build_operation("remove_background", {"if_unsuitable": "guess"})


def test_keep_returns_a_busy_photo_whole_and_opaque_and_notes_why():
    photo = images.photo(320, 240)
    context = OperationContext.default()
    result = build_operation("remove_background", {"if_unsuitable": "keep"}).apply(photo, context)
    assert result.mode == "RGB" and np.array_equal(np.asarray(result), np.asarray(photo))
    assert [note["code"] for note in context.notes] == ["kept_whole"]
    assert "plain or studio backdrop" in context.notes[0]["message"]


def test_refuse_is_still_the_default():
    with pytest.raises(PermanentError) as error:
        build_operation("remove_background", {}).apply(images.photo(320, 240), OperationContext.default())
    assert error.value.code == "no_plain_background"


def test_a_providers_garbage_cut_out_meets_the_same_gate():
    image, _ = studio_scene()
    specks = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(specks).rectangle((0, 0, 1, 1), fill=(9, 9, 9, 255))
    step = RemoteStep(build_operation("remove_background", {"if_unsuitable": "keep"}), "sim-removebg")
    context = OperationContext(load_asset=lambda name: b"", remote=lambda step, image: specks)
    result = step.apply(image, context)
    assert result.mode == "RGB" and context.notes[0]["code"] == "kept_whole"
    strict = RemoteStep(build_operation("remove_background", {}), "sim-removebg")
    with pytest.raises(PermanentError, match="almost nothing"):
        strict.apply(image, OperationContext(load_asset=lambda name: b"", remote=lambda step, image: specks))


def corpus_image(photo: dict) -> Image.Image:
    register_heif()
    side = CORPUS_LONG_SIDE
    image = decode_image(photo["path"].read_bytes(), min_size=(side, side))
    image.thumbnail((side, side))
    return image


def test_on_every_real_photo_background_removal_refuses_clearly_or_passes_the_gate(real_photo):
    image = corpus_image(real_photo)
    try:
        result = build_operation("remove_background", {}).apply(image, OperationContext.default())
    except PermanentError as error:
        assert error.code in ("no_plain_background", "no_subject", "unusable_cutout")
        assert len(error.message) > 40  # a sentence a user can act on, not a bare code
        return
    assert result.mode == "RGBA"
    if image.mode != "RGBA":  # an upload that was cut out already goes on as it is
        check_cutout(image, result.getchannel("A"))


def test_the_studio_product_cut_out_keeps_the_cup_and_drops_the_backdrop():
    manifest = load_manifest(default_cache_dir())
    if manifest is None:
        pytest.skip("NO REAL PHOTOS: build the corpus with `make corpus`")
    photos = {
        photo["id"]: {**photo, "path": default_cache_dir() / photo["file"]} for photo in manifest["photos"]
    }
    studio = corpus_image(photos["studio-product"])
    # The studio shot is the `cutout` photo's cup, enlarged 1.5× onto a 1400×1200 sweep at (250, 340).
    cup = decode_image(photos["cutout"]["path"].read_bytes()).getchannel("A")
    placed = Image.new("L", (1400, 1200), 0)
    placed.paste(cup.resize((cup.width * 3 // 2, cup.height * 3 // 2)), (250, 340))
    cup_region = np.asarray(placed.resize(studio.size)) > 200

    result = build_operation("remove_background", {}).apply(studio, OperationContext.default())
    alpha = np.asarray(result.getchannel("A"))
    assert np.mean(alpha[cup_region] >= 128) >= 0.9
    for corner in (alpha[:20, :20], alpha[:20, -20:], alpha[-20:, :20], alpha[-20:, -20:]):
        assert corner.max() == 0


def stocky_mask(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((60, 120, 260, 200), fill=255)  # 2.5:1, like a pier or a keyboard
    return mask


def test_the_gate_refuses_a_band_running_across_the_frame():
    image, _ = studio_scene()
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle((0, 150, 319, 200), fill=255)  # a horizon, not a subject
    with pytest.raises(PermanentError, match="band running across"):
        check_cutout(image, mask)


def test_the_gate_refuses_a_thin_strip_across_most_of_the_frame_but_not_a_long_product():
    """A horizon split off a landscape need not touch both edges to be a band (the corpus's storm)."""
    image, _ = studio_scene()
    strip = Image.new("L", image.size, 0)
    ImageDraw.Draw(strip).rectangle((40, 150, 300, 190), fill=255)  # 6.5:1 over 81% of the width
    with pytest.raises(PermanentError, match="band running across"):
        check_cutout(image, strip)
    assert measure_cutout(image, stocky_mask(image.size)).spans_frame is False

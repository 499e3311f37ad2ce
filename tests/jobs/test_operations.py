"""Operations: parameters validated with clear messages, every operation on awkward inputs, honest results."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jobs.errors import PermanentError
from jobs.imaging import FOCUS_KEY, SUBJECT_KEY, decode_image
from jobs.operations import (
    MAX_ENHANCE_SHIFT,
    OPERATIONS,
    OperationContext,
    OperationParamsError,
    build_operation,
)
from tests.jobs import images

CONTEXT = OperationContext.default()
EXAMPLE_PARAMS = {
    "remove_background": {},
    "enhance": {},
    "upscale": {"factor": 2},
    "canvas": {"background": "#fff", "margin": 0.1, "aspect": "1:1"},
    "smart_crop": {"aspect": "16:9"},
    "watermark": {"position": "top-right", "opacity": 0.5},
    "text_overlay": {"text": "20% OFF"},
}
AWKWARD = {
    "rgba": lambda: images.png(images.product_cutout(240, 180)),
    "cmyk": lambda: images.cmyk_jpeg(images.product_on_white(240, 180)),
    "16-bit": lambda: images.png_16bit_product(240, 180),
    "exif-rotated": lambda: images.exif_rotated_jpeg(images.product_on_white(240, 180)),
    "palette-transparency": lambda: images.palette_png_with_transparency(),
    "1x1": lambda: images.png(Image.new("RGB", (1, 1), (200, 40, 40))),
}


def test_every_registered_operation_has_an_example():
    assert set(EXAMPLE_PARAMS) == set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
@pytest.mark.parametrize("kind", sorted(AWKWARD))
def test_every_operation_handles_awkward_inputs(name, kind):
    image = decode_image(AWKWARD[kind]())
    try:
        result = build_operation(name, EXAMPLE_PARAMS[name]).apply(image, CONTEXT)
    except PermanentError as error:
        # The honest refusals: a backdrop not plain enough to remove, text with no room on a 1×1 image.
        allowed = name == "remove_background" or (name, kind) == ("text_overlay", "1x1")
        assert allowed and error.message, error
        return
    assert result.mode in {"RGB", "RGBA"}
    assert result.width > 0 and result.height > 0


@pytest.mark.parametrize(
    ("name", "params", "mentions"),
    [
        ("canvas", {"margin": 7}, "margin"),
        ("canvas", {"background": "red-ish"}, "background"),
        ("upscale", {"factor": 3}, "factor"),
        ("text_overlay", {}, "text"),
        ("text_overlay", {"text": "x" * 200}, "text"),
        ("smart_crop", {"aspect": "wide"}, "aspect"),
        ("watermark", {"logo": "../../etc/passwd"}, "logo"),
        ("enhance", {"colour": True}, "colour"),
        ("teleport", {}, "unknown operation"),
    ],
)
def test_invalid_params_name_what_is_wrong(name, params, mentions):
    with pytest.raises(OperationParamsError, match=mentions):
        build_operation(name, params)


def test_params_are_canonical_with_defaults_filled():
    first = build_operation("canvas", {"background": "#FFF"}).params()
    second = build_operation("canvas", {"background": "#ffffff", "margin": first["margin"]}).params()
    assert first == second and first["background"] == "#ffffff"


def test_remove_background_separates_product_from_a_plain_backdrop():
    for backdrop in ("white", "studio"):
        scene = images.product_scene(480, 360, backdrop=backdrop, centre=(0.35, 0.55))
        result = build_operation("remove_background", {}).apply(scene.image, CONTEXT)
        assert result.mode == "RGBA"
        alpha = np.asarray(result.getchannel("A")) > 127
        iou = (alpha & scene.mask).sum() / (alpha | scene.mask).sum()
        assert iou > 0.9, (backdrop, iou)
        # The white label inside the product is not mistaken for backdrop.
        x0, y0, x1, y1 = scene.box
        assert alpha[(y0 + y1) // 2, (x0 + x1) // 2]


def test_remove_background_refuses_a_busy_photo_with_a_reason():
    with pytest.raises(PermanentError) as error:
        build_operation("remove_background", {}).apply(images.photo(320, 240), CONTEXT)
    assert error.value.code == "no_plain_background" and "backdrop" in error.value.message


def test_canvas_centres_the_cut_out_subject_on_colour_with_a_margin():
    cutout = images.product_cutout(400, 300)
    result = build_operation("canvas", {"background": "#ffffff", "margin": 0.1, "aspect": "1:1"}).apply(
        cutout, CONTEXT
    )
    assert result.mode == "RGB" and result.width == result.height
    pixels = np.asarray(result)
    assert (pixels[: result.height // 20] > 250).all()  # the margin is white
    non_white = np.argwhere((pixels < 240).any(axis=2))
    centre = non_white.mean(axis=0) / result.height
    assert abs(centre[0] - 0.5) < 0.1 and abs(centre[1] - 0.5) < 0.1


def test_smart_crop_keeps_an_off_centre_subject():
    scene = images.product_scene(800, 400, centre=(0.82, 0.5), size=0.5)
    result = build_operation("smart_crop", {"aspect": "1:1"}).apply(scene.image, CONTEXT)
    assert result.size == (400, 400)
    # The product (blue) is inside the crop; a centre crop would have cut it off.
    pixels = np.asarray(result).astype(int)
    blue = (pixels[..., 2] - pixels[..., 0] > 60).sum()
    assert blue > 0.8 * scene.mask.sum()


def test_smart_crop_without_aspect_only_records_the_focus():
    scene = images.product_scene(600, 400, centre=(0.25, 0.5))
    result = build_operation("smart_crop", {}).apply(scene.image, CONTEXT)
    assert result.size == scene.image.size
    fx, fy = result.info[FOCUS_KEY]
    assert fx < 0.4 and 0.3 < fy < 0.7
    assert SUBJECT_KEY in result.info


def test_upscale_multiplies_the_size():
    result = build_operation("upscale", {"factor": 4}).apply(images.photo(50, 40), CONTEXT)
    assert result.size == (200, 160)


def test_upscale_refuses_beyond_the_pixel_cap():
    with pytest.raises(PermanentError) as error:
        build_operation("upscale", {"factor": 4}).apply(Image.new("RGB", (3000, 2500)), CONTEXT)
    assert error.value.code == "too_large"


def channel_means(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def test_enhance_by_default_only_sharpens_and_keeps_colour():
    photo = images.photo(200, 150)
    operation = build_operation("enhance", {})
    assert (operation.white_balance, operation.cutoff) == (False, 0)
    result = operation.apply(photo, CONTEXT)
    assert np.abs(channel_means(result) - channel_means(photo)).max() < 0.5
    assert not np.array_equal(np.asarray(result), np.asarray(photo))  # it did sharpen


def test_enhance_stretches_a_flat_low_contrast_photo_when_asked():
    flat = Image.fromarray((np.asarray(images.photo(200, 150)) * 0.3 + 90).astype(np.uint8))
    result = build_operation("enhance", {"cutoff": 0.5}).apply(flat, CONTEXT)
    assert np.asarray(result).std() > np.asarray(flat).std() * 1.5


@pytest.mark.parametrize(
    "params",
    [
        {"cutoff": 10, "white_balance": True, "sharpen": 2},
        {"cutoff": 0.5, "white_balance": True},
        {"cutoff": 0, "white_balance": True, "sharpen": 0},
    ],
)
@pytest.mark.parametrize(
    "picture",
    [
        "flat-and-dark",
        "strong-cast",
        "cut-out",
    ],
)
def test_enhance_never_moves_a_channels_average_more_than_its_stated_bound(params, picture):
    """The bound in the description holds however hard the corrections are pushed."""
    flat = (np.asarray(images.photo(200, 150)) * 0.3 + 40).astype(np.uint8)
    pictures = {
        "flat-and-dark": lambda: Image.fromarray(flat),
        "strong-cast": lambda: Image.fromarray(np.clip(flat * (1.6, 1.0, 0.6) + 60, 0, 255).astype(np.uint8)),
        "cut-out": lambda: images.product_cutout(200, 150),
    }
    source = pictures[picture]()
    result = build_operation("enhance", params).apply(source, CONTEXT)
    if source.mode == "RGBA":
        visible = np.asarray(source.getchannel("A")) >= 128
        before = np.asarray(source.convert("RGB"), dtype=np.float64)[visible].mean(axis=0)
        after = np.asarray(result.convert("RGB"), dtype=np.float64)[visible].mean(axis=0)
    else:
        before, after = channel_means(source), channel_means(result)
    assert np.abs(after - before).max() <= MAX_ENHANCE_SHIFT
    assert f"more than {MAX_ENHANCE_SHIFT} levels" in OPERATIONS["enhance"].description


def test_text_overlay_draws_a_badge_where_asked():
    plain = Image.new("RGB", (600, 300), (20, 20, 20))
    result = build_operation("text_overlay", {"text": "20% OFF", "position": "top-left"}).apply(
        plain, CONTEXT
    )
    pixels = np.asarray(result).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert red.sum() > 500 and xs.mean() < 300 and ys.mean() < 150


def test_watermark_is_stamped_in_the_chosen_corner_with_opacity():
    plain = Image.new("RGB", (800, 600), (255, 255, 255))
    result = build_operation("watermark", {"position": "bottom-right", "opacity": 1}).apply(plain, CONTEXT)
    changed = (np.asarray(result).astype(int) < 200).any(axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() > 400 and ys.min() > 300
    assert not changed[:300, :400].any()


def test_operations_describe_themselves_honestly():
    assert {name for name, op in OPERATIONS.items() if op.remote_capable} == {
        "remove_background",
        "enhance",
        "upscale",
    }
    assert "Lanczos" in OPERATIONS["upscale"].description and "AI" in OPERATIONS["upscale"].description
    assert "plain or studio backdrop" in OPERATIONS["remove_background"].description
    for operation in OPERATIONS.values():
        assert operation.label and operation.description.endswith(".")


def test_unknown_parameters_are_refused_listing_the_expected_ones():
    with pytest.raises(OperationParamsError, match="unknown parameter 'factr'; expected: factor"):
        build_operation("upscale", {"factr": 2})


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("upscale", {"factor": 2}, 0.5),
        ("upscale", {"factor": 4}, 0.25),
        ("enhance", {}, 1.0),
        ("remove_background", {}, 1.0),
        ("watermark", {}, 1.0),
        ("smart_crop", {}, 1.0),
        ("smart_crop", {"aspect": "1:1"}, None),
        ("canvas", {"trim": True}, None),
        ("canvas", {"trim": False, "margin": 0.1}, 0.8),
    ],
)
def test_source_scale_says_how_much_resolution_a_step_needs(name, params, expected):
    assert build_operation(name, params).source_scale() == expected


def test_params_round_trip_through_their_canonical_form():
    for name, params in EXAMPLE_PARAMS.items():
        operation = build_operation(name, params)
        assert build_operation(name, operation.params()) == operation
    assert build_operation("smart_crop", {"aspect": "1200:628"}).params()["aspect"] == "300:157"


def test_remove_background_keeps_what_was_already_transparent():
    scene = images.product_scene(320, 240)
    image = scene.image.convert("RGBA")
    hole = Image.new("L", (40, 40), 0)
    alpha = image.getchannel("A")
    x0, y0, x1, y1 = scene.box
    alpha.paste(hole, ((x0 + x1) // 2 - 20, y0 + 5))  # punch a hole into the product itself
    image.putalpha(alpha)
    result = build_operation("remove_background", {"feather": 0}).apply(image, CONTEXT)
    assert result.getpixel(((x0 + x1) // 2, y0 + 25))[3] == 0


def test_enhance_neutralises_a_mild_colour_cast_and_keeps_alpha():
    grey_card = np.full((120, 160, 3), 128.0)
    grey_card[40:80, 50:110] = (200, 60, 60)  # a red object must not be what gets "corrected"
    warm = Image.fromarray(np.clip(grey_card * (1.06, 1.0, 0.94), 0, 255).astype(np.uint8)).convert("RGBA")
    warm.putalpha(Image.new("L", warm.size, 200))
    result = build_operation("enhance", {"white_balance": True, "sharpen": 0}).apply(warm, CONTEXT)
    assert result.mode == "RGBA" and result.getchannel("A").getextrema() == (200, 200)
    r, g, b, _ = result.getpixel((5, 5))
    before = warm.getpixel((5, 5))
    assert abs(r - b) < abs(before[0] - before[2]) / 3  # the grey background is grey again


def test_enhance_only_tempers_a_strong_cast_within_its_gain_bound():
    grey_card = np.full((120, 160, 3), 128.0)
    warm = Image.fromarray(np.clip(grey_card * (1.2, 1.0, 0.85), 0, 255).astype(np.uint8))
    result = build_operation("enhance", {"white_balance": True, "sharpen": 0}).apply(warm, CONTEXT)
    r, _, b = result.getpixel((5, 5))
    before = warm.getpixel((5, 5))
    assert 0 < r - b < before[0] - before[2]  # warmer than grey still, but less so
    assert before[2] <= b <= before[2] * 1.12 and before[0] * 0.89 <= r <= before[0]


def test_upscale_keeps_transparency():
    result = build_operation("upscale", {"factor": 2}).apply(images.product_cutout(120, 90), CONTEXT)
    assert result.mode == "RGBA" and result.size == (240, 180) and result.getpixel((1, 1))[3] == 0


def test_canvas_on_transparent_keeps_the_cut_out_and_moves_the_focus_with_it():
    cutout = images.product_cutout(400, 300)
    focused = build_operation("smart_crop", {}).apply(cutout, CONTEXT)
    result = build_operation("canvas", {"background": "transparent", "margin": 0.2}).apply(focused, CONTEXT)
    assert result.mode == "RGBA" and result.getpixel((0, 0))[3] == 0
    x0, y0, x1, y1 = result.info[SUBJECT_KEY]
    # Trimmed to the subject and padded by 20% on each side: the subject fills the middle 60%.
    assert x0 == pytest.approx(0.2, abs=0.02) and x1 == pytest.approx(0.8, abs=0.02)
    assert y0 == pytest.approx(0.2, abs=0.02) and y1 == pytest.approx(0.8, abs=0.02)


def test_smart_crop_on_a_cut_out_uses_its_alpha():
    cutout = images.product_cutout(480, 360)
    result = build_operation("smart_crop", {"focus": "subject"}).apply(cutout, CONTEXT)
    scene = images.product_scene(480, 360)
    x0, y0, x1, y1 = result.info[SUBJECT_KEY]
    assert (round(x0 * 480), round(x1 * 480)) == (scene.box[0], scene.box[2])
    assert (round(y0 * 360), round(y1 * 360)) == (scene.box[1], scene.box[3])


def test_long_text_is_shrunk_to_stay_inside_the_image():
    plain = Image.new("RGB", (300, 200), (20, 20, 20))
    text = "Everything must go, final clearance, this weekend only!"
    result = build_operation("text_overlay", {"text": text, "size": 0.3, "position": "center"}).apply(
        plain, CONTEXT
    )
    changed = (np.asarray(result).astype(int) != 20).any(axis=2)
    ys, xs = np.nonzero(changed)
    margin = round(0.03 * 200)
    assert xs.min() >= margin and xs.max() < 300 - margin and ys.min() >= margin and ys.max() < 200 - margin


def test_text_without_a_box_draws_only_the_letters():
    plain = Image.new("RGB", (400, 200), (20, 20, 20))
    result = build_operation(
        "text_overlay", {"text": "NEW", "background": "none", "color": "#0f0", "position": "bottom"}
    ).apply(plain, CONTEXT)
    pixels = np.asarray(result).astype(int)
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 80)
    ys, xs = np.nonzero(green)
    assert green.sum() > 100 and ys.min() > 100 and abs(xs.mean() - 200) < 30
    assert not ((pixels[..., 0] > 150) & (pixels[..., 1] < 80)).any()  # no red box


def test_watermark_opacity_blends_with_the_picture():
    plain = Image.new("RGB", (800, 600), (255, 255, 255))
    opaque = build_operation("watermark", {"opacity": 1}).apply(plain, CONTEXT)
    faint = build_operation("watermark", {"opacity": 0.3}).apply(plain, CONTEXT)
    darkest_opaque = np.asarray(opaque).min()
    darkest_faint = np.asarray(faint).min()
    assert darkest_opaque < 80 and darkest_faint > 150


def test_watermark_with_a_missing_logo_is_a_permanent_error():
    with pytest.raises(PermanentError) as error:
        build_operation("watermark", {"logo": "no-such-logo.png"}).apply(images.photo(200, 100), CONTEXT)
    assert error.value.code == "missing_asset"


def test_remove_background_on_a_twelve_megapixel_photo_cuts_the_product_out():
    """At full 12 MP size (its speed is measured by the benchmarks, not asserted here)."""
    scene = images.enlarged(images.product_scene(1000, 750, backdrop="studio", size=0.7), 4)
    result = build_operation("remove_background", {}).apply(scene.image, CONTEXT)
    alpha = np.asarray(result.getchannel("A")) > 127
    assert (alpha & scene.mask).sum() / (alpha | scene.mask).sum() > 0.98


def test_smart_crop_finds_a_subject_in_a_strip_three_pixels_thin():
    """A 321×3 strip maps to a saliency map one pixel high, where no gradient can be taken."""
    strip = build_operation("smart_crop", {"aspect": "1:1"}).apply(
        images.photo(321, 3), OperationContext.default()
    )
    assert strip.size == (3, 3)

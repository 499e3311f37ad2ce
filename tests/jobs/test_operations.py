"""Operations: parameters validated with clear messages, every operation on awkward inputs, honest results."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jobs.errors import PermanentError
from jobs.imaging import FOCUS_KEY, SUBJECT_KEY, decode_image
from jobs.operations import OPERATIONS, OperationContext, OperationParamsError, build_operation
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


def test_enhance_stretches_a_flat_low_contrast_photo():
    flat = Image.fromarray((np.asarray(images.photo(200, 150)) * 0.3 + 90).astype(np.uint8))
    result = build_operation("enhance", {}).apply(flat, CONTEXT)
    assert np.asarray(result).std() > np.asarray(flat).std() * 1.5


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

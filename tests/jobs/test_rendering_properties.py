"""Properties of the renderer over any valid image: it never fails, and every output has the promised size."""

from __future__ import annotations

import io
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from jobs import resampling
from jobs.errors import PermanentError
from jobs.imaging import FOCUS_KEY, SUBJECT_KEY
from jobs.operations import OperationContext, build_operation
from jobs.outputs import FITS, MAX_SIDE, OutputSpec, not_made_reason
from jobs.rendering import render_outputs, run_pipeline
from jobs.resampling import BOX, LANCZOS, resample

# Any side a user may upload (the decoder's pixel limit aside), but few enough pixels per example that
# a hundred and fifty of them take seconds: a 12,000 px side comes with a short other side.
MAX_SOURCE_SIDE = 12_000
MAX_SOURCE_PIXELS = 3_000_000
MAX_OUTPUT_PIXELS = 1_000_000
MIN_BOX_SPAN = 1e-6
# Hints at the very edges as often as anywhere inside.
UNIT = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def sizes(draw: st.DrawFn, longest: int, pixels: int) -> tuple[int, int]:
    """A width and height up to `longest`, with any aspect ratio, at most `pixels` in all."""
    width = draw(st.integers(1, longest))
    height = draw(st.integers(1, max(1, min(longest, pixels // width))))
    return (width, height) if draw(st.booleans()) else (height, width)


@st.composite
def sources(draw: st.DrawFn) -> Image.Image:
    """A cheap picture (a colour with a block of another), RGB or RGBA, maybe with focus hints."""
    mode = draw(st.sampled_from(["RGB", "RGBA"]))
    width, height = draw(sizes(MAX_SOURCE_SIDE, MAX_SOURCE_PIXELS))
    image = Image.new(mode, (width, height), (200, 30, 60, 255))
    image.paste((20, 90, 220, 0 if mode == "RGBA" else 255), (0, 0, max(1, width // 3), max(1, height // 2)))
    if draw(st.booleans()):
        image.info[FOCUS_KEY] = (draw(UNIT), draw(UNIT))
    if draw(st.booleans()):
        x0, x1 = sorted((draw(UNIT), draw(UNIT)))
        y0, y1 = sorted((draw(UNIT), draw(UNIT)))
        image.info[SUBJECT_KEY] = (x0, y0, x1, y1)
    return image


@st.composite
def output_specs(draw: st.DrawFn) -> list[OutputSpec]:
    """One to three outputs of any box and fit mode, so the cascade has intermediates to share."""
    specs = []
    for index in range(draw(st.integers(1, 3))):
        width, height = draw(sizes(MAX_SIDE, MAX_OUTPUT_PIXELS))
        fit = draw(st.sampled_from(FITS))
        background = draw(st.sampled_from(["#ffffff", "transparent"]))
        fmt = "png" if background == "transparent" else draw(st.sampled_from(["jpeg", "png"]))
        specs.append(OutputSpec(f"o{index}", width, height, fit, fmt, background=background))
    return specs


def assert_promised_sizes(source: tuple[int, int], specs: list[OutputSpec], outputs: list) -> None:
    for spec, output in zip(specs, outputs, strict=True):
        decoded = Image.open(io.BytesIO(output.data)).size
        assert decoded == (output.width, output.height), spec
        if spec.fit == "fit":
            # Inside the box, never larger than the source.
            assert 1 <= output.width <= min(spec.width, source[0]), (spec, source, decoded)
            assert 1 <= output.height <= min(spec.height, source[1]), (spec, source, decoded)
        else:
            assert decoded == (spec.width, spec.height), (spec, source)


@PROPERTY_SETTINGS
@given(source=sources(), specs=output_specs())
def test_every_output_has_the_promised_size_and_nothing_raises(source, specs):
    outputs = render_outputs(source, specs)
    assert_promised_sizes(source.size, specs, outputs)


@PROPERTY_SETTINGS
@given(
    source=sources(),
    aspect=st.tuples(st.integers(1, 50), st.integers(1, 50)).filter(lambda a: 0.1 <= a[0] / a[1] <= 10),
    specs=output_specs(),
)
def test_a_smart_crop_to_any_aspect_then_any_output_renders(source, aspect, specs):
    cropped = build_operation("smart_crop", {"aspect": f"{aspect[0]}:{aspect[1]}"}).apply(
        source, OperationContext.default()
    )
    outputs = render_outputs(cropped, specs)
    assert_promised_sizes(cropped.size, specs, outputs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=sizes(4000, 1_500_000),
    aspect=st.one_of(st.none(), st.tuples(st.integers(1, 10), st.integers(1, 10))),
    specs=output_specs(),
)
def test_the_pipeline_renders_any_jpeg_at_its_draft_scale(size, aspect, specs):
    """Through run_pipeline: the draft decode picks a smaller picture than the source, then the outputs;
    without a crop, the outputs left out are exactly those the whole photo would be enlarged past 4× for."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 40)).save(buffer, "JPEG", quality=80)
    steps = [build_operation("smart_crop", {"aspect": f"{aspect[0]}:{aspect[1]}"})] if aspect else []
    try:
        result = run_pipeline(buffer.getvalue(), steps, specs)
    except PermanentError as error:
        assert error.code == "too_small"
        assert steps or all(not_made_reason(spec, size) for spec in specs)
        return
    rendered = (result.width, result.height)
    made = [spec for spec in specs if not_made_reason(spec, rendered if steps else size) is None]
    assert_promised_sizes(rendered, made, result.outputs)


@st.composite
def boxes(draw: st.DrawFn, width: int, height: int) -> tuple[float, float, float, float]:
    """A region of a width×height picture with fractional edges, its edges often on the picture's.

    At least MIN_BOX_SPAN across: the renderer's thinnest is a 1 px output of a 1 px source enlarged
    10,000 times (1e-4); the resizer itself fails only on spans of a subnormal float (5e-324).
    """

    def span(length: int) -> tuple[float, float]:
        start = draw(st.one_of(st.just(0.0), st.floats(0.0, length - MIN_BOX_SPAN)))
        end = draw(st.one_of(st.just(float(length)), st.floats(start + MIN_BOX_SPAN, length)))
        return start, end

    (left, right), (top, bottom) = span(width), span(height)
    return left, top, right, bottom


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    mode=st.sampled_from(["RGB", "RGBA"]),
    source=sizes(3000, 2_000_000),
    target=sizes(3000, 500_000),
    box_filter=st.booleans(),
    band_bytes=st.sampled_from([resampling.BAND_BYTES, 4096]),
)
def test_resample_takes_any_fractional_box_inside_the_picture(
    data, mode, source, target, box_filter, band_bytes
):
    """Any region inside the picture, to any size, in one pass or in bands of a few rows."""
    box = data.draw(boxes(*source))
    with mock.patch.object(resampling, "BAND_BYTES", band_bytes):
        result = resample(Image.new(mode, source), target, box, algorithm=BOX if box_filter else LANCZOS)
    assert result.size == target and result.mode == mode

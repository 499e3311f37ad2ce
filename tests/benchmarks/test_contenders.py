"""The benchmark's contenders do the same work: the same outputs, at the same sizes, in spec order."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from benchmarks.contenders import CONTENDERS, with_preview
from benchmarks.quality import ssim
from jobs.outputs import OutputSpec
from tests.jobs import images

SPECS = [
    OutputSpec("zoom", 600, 600, "pad", "jpeg"),
    OutputSpec("zoom-webp", 600, 600, "pad", "webp"),
    OutputSpec("banner", 400, 200, "fill", "jpeg"),
    OutputSpec("small", 100, 100, "fit", "png"),
]


@pytest.mark.parametrize("name", sorted(CONTENDERS))
def test_every_contender_makes_every_output_at_the_promised_size(name):
    if name == "libvips":
        pytest.importorskip("pyvips", reason="libvips is installed by requirements-bench.txt")
    contender = CONTENDERS[name]()
    source = images.jpeg(images.photo(1600, 1200))
    contender.prepare(source, SPECS)
    outputs = [Image.open(io.BytesIO(data)) for data in contender.run()]
    expected = [(600, 600), (600, 600), (400, 200), (100, 75), (320, 240)]
    assert [image.size for image in outputs] == expected
    assert [image.format for image in outputs] == ["JPEG", "WEBP", "JPEG", "PNG", "WEBP"]
    assert len(outputs) == len(with_preview(SPECS))


def test_pixelmill_and_naive_pillow_render_the_same_pictures():
    source = images.jpeg(images.photo(1600, 1200), quality=95)
    rendered = {}
    for name in ("pixelmill", "naive"):
        contender = CONTENDERS[name]()
        contender.prepare(
            source, [OutputSpec("p", 600, 600, "pad", "png"), OutputSpec("f", 400, 200, "fill", "png")]
        )
        rendered[name] = [Image.open(io.BytesIO(data)) for data in contender.run()]
    for ours, naive in zip(rendered["pixelmill"][:2], rendered["naive"][:2], strict=True):
        assert ssim(ours, naive) >= 0.99

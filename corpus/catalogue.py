"""The real photographs of the test corpus: where each comes from, what it shows, and its subject box."""

from __future__ import annotations

from dataclasses import dataclass, field

# Where a photo comes from: a package of a registry this project may use (PyPI wheels, Debian packages).
# Versions are pinned so every machine builds the same corpus; the sha256 prefixes catch a repackaging.
PYPI_PACKAGES = {
    "scikit-image": "0.26.0",
    "scikit-learn": None,  # the two sample photos have not changed in years; any wheel for this Python
    "matplotlib": None,
}
DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds", "libgs-common", "colord-data")

PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
MATE = "usr/share/backgrounds/mate/nature/{}"
SKIMAGE = "skimage/data/{}"

# Colour profiles the awkward variants are tagged with (converted into, then embedded).
CMYK_PROFILE = ("libgs-common", "usr/share/color/icc/ghostscript/default_cmyk.icc")
ADOBE_RGB_PROFILE = ("colord-data", "usr/share/color/icc/colord/AdobeRGB1998.icc")
SRGB_V2_PROFILE = ("libgs-common", "usr/share/color/icc/ghostscript/srgb.icc")


@dataclass(frozen=True)
class Photo:
    """One real photograph as shipped by its package.

    `subject` is the box a person marked by hand around what the picture is of (normalised x0, y0,
    x1, y1 of the upright picture); smart crops must keep it. None where a photo has no single subject.
    """

    id: str
    package: str
    member: str
    tags: tuple[str, ...]
    subject: tuple[float, float, float, float] | None = None
    note: str = ""


PHOTOS: tuple[Photo, ...] = (
    # People
    Photo(
        "astronaut",
        "scikit-image",
        SKIMAGE.format("astronaut.png"),
        ("person", "png"),
        (0.30, 0.03, 0.59, 0.33),
    ),
    Photo(
        "grace-hopper",
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        ("person",),
        (0.30, 0.04, 0.72, 0.56),
    ),
    Photo("cameraman", "scikit-image", SKIMAGE.format("camera.png"), ("person", "grayscale", "png")),
    # Animals
    Photo("cat", "scikit-image", SKIMAGE.format("chelsea.png"), ("animal", "png"), (0.25, 0.25, 0.80, 0.95)),
    Photo(
        "ladybird",
        "mate-backgrounds",
        MATE.format("LadyBird.jpg"),
        ("animal", "small-subject"),
        (0.65, 0.44, 0.75, 0.61),
    ),
    # Products and objects
    Photo(
        "coffee", "scikit-image", SKIMAGE.format("coffee.png"), ("product", "png"), (0.13, 0.04, 0.80, 0.97)
    ),
    Photo(
        "motorcycle",
        "scikit-image",
        SKIMAGE.format("motorcycle_left.png"),
        ("product", "busy-backdrop", "png"),
        (0.13, 0.17, 0.93, 0.90),
    ),
    Photo("coins", "scikit-image", SKIMAGE.format("coins.png"), ("product", "grayscale", "png")),
    Photo(
        "rocket",
        "scikit-image",
        SKIMAGE.format("rocket.jpg"),
        ("object", "low-light"),
        (0.48, 0.30, 0.53, 0.96),
    ),
    Photo(
        "kite",
        "plasma-workspace-wallpapers",
        PLASMA.format("Kite", "2560x1600.jpg"),
        ("object", "small-subject", "sky"),
        (0.64, 0.30, 0.71, 0.41),
    ),
    # Plants
    Photo(
        "dahlia",
        "scikit-learn",
        "sklearn/datasets/images/flower.jpg",
        ("plant",),
        (0.26, 0.19, 0.70, 0.84),
    ),
    Photo(
        "fallen-leaf",
        "plasma-workspace-wallpapers",
        PLASMA.format("FallenLeaf", "2560x1600.jpg"),
        ("plant", "warm"),
        (0.52, 0.30, 0.93, 0.80),
    ),
    Photo(
        "moss",
        "plasma-workspace-wallpapers",
        PLASMA.format("OneStandsOut", "2560x1600.jpg"),
        ("plant", "small-subject", "low-light"),
        (0.60, 0.43, 0.70, 0.57),
    ),
    Photo("fresh-flower", "mate-backgrounds", MATE.format("FreshFlower.jpg"), ("plant", "warm")),
    Photo("yellow-flower", "mate-backgrounds", MATE.format("YellowFlower.jpg"), ("plant",)),
    Photo("green-meadow", "mate-backgrounds", MATE.format("GreenMeadow.jpg"), ("plant",)),
    Photo("raindrops", "mate-backgrounds", MATE.format("RainDrops.jpg"), ("plant",)),
    # Places
    Photo("temple", "scikit-learn", "sklearn/datasets/images/china.jpg", ("landscape",)),
    Photo(
        "boats",
        "plasma-workspace-wallpapers",
        PLASMA.format("EveningGlow", "2560x1600.jpg"),
        ("landscape", "sunset"),
    ),
    Photo(
        "lake", "plasma-workspace-wallpapers", PLASMA.format("BytheWater", "2560x1600.jpg"), ("landscape",)
    ),
    Photo(
        "fog-pier",
        "plasma-workspace-wallpapers",
        PLASMA.format("ColdRipple", "2560x1600.jpg"),
        ("landscape", "high-key"),
    ),
    Photo(
        "dusk",
        "plasma-workspace-wallpapers",
        PLASMA.format("DarkestHour", "2560x1600.jpg"),
        ("landscape", "low-light"),
    ),
    Photo(
        "forest-path", "plasma-workspace-wallpapers", PLASMA.format("Path", "2560x1600.jpg"), ("landscape",)
    ),
    Photo(
        "purple-lake",
        "plasma-workspace-wallpapers",
        PLASMA.format("summer_1am", "2560x1600.jpg"),
        ("landscape", "low-light"),
    ),
    Photo(
        "architecture",
        "plasma-workspace-wallpapers",
        PLASMA.format("Grey", "2560x1600.jpg"),
        ("architecture", "high-key"),
    ),
    Photo("wood", "mate-backgrounds", MATE.format("Wood.jpg"), ("texture", "warm")),
    Photo("storm", "mate-backgrounds", MATE.format("Storm.jpg"), ("landscape", "low-light")),
    Photo("deep-field", "scikit-image", SKIMAGE.format("hubble_deep_field.jpg"), ("space", "low-light")),
)


@dataclass(frozen=True)
class Variant:
    """An awkward file made from a corpus photo: `make` names the preparation in corpus.build."""

    id: str
    base: str
    make: str
    tags: tuple[str, ...]
    options: dict[str, object] = field(default_factory=dict)


VARIANTS: tuple[Variant, ...] = (
    *(
        Variant(f"orientation-{n}", "grace-hopper", "orientation", ("exif-orientation",), {"orientation": n})
        for n in range(1, 9)
    ),
    Variant("cmyk-profile", "coffee", "cmyk", ("cmyk", "icc"), {"profile": True}),
    Variant("cmyk-bare", "cat", "cmyk", ("cmyk",), {"profile": False}),
    Variant("adobe-rgb", "fallen-leaf", "wide_gamut", ("icc", "wide-gamut"), {"gamut": "adobe-rgb"}),
    Variant("display-p3", "dahlia", "wide_gamut", ("icc", "wide-gamut"), {"gamut": "display-p3"}),
    Variant("rgb-16bit", "astronaut", "rgb16", ("16-bit", "png")),
    Variant("gray-16bit", "cameraman", "gray16", ("16-bit", "grayscale", "png")),
    Variant("grayscale-jpeg", "temple", "grayscale", ("grayscale",)),
    Variant("cutout", "coffee", "cutout", ("alpha", "png", "product")),
    Variant("palette-transparent", "coffee", "palette", ("palette", "alpha", "png", "product")),
    Variant("palette-gif", "ladybird", "gif", ("palette", "gif")),
    Variant("animated-gif", "kite", "animated", ("animated", "gif")),
    Variant("studio-product", "coffee", "studio", ("product", "studio")),
    Variant("progressive-gps", "boats", "progressive", ("progressive", "exif-gps")),
    Variant("webp", "ladybird", "webp", ("webp",)),
    Variant("tiff", "motorcycle", "tiff", ("tiff",)),
    Variant("heic", "rocket", "heic", ("heic",)),
    Variant("avif", "cat", "avif", ("avif",)),
    Variant("rgba-12mp", "lake", "rgba_large", ("alpha", "png", "large")),
    # No registry ships a photo this large: real photos enlarged with Lanczos, for size and memory.
    Variant("photo-12mp", "ladybird", "upscale", ("large",), {"size": (4240, 2650)}),
    Variant("photo-24mp", "boats", "upscale", ("large",), {"size": (6200, 3875)}),
    Variant("tiny", "kite", "tiny", ("tiny",), {"size": (64, 40)}),
    Variant("one-pixel", "coffee", "tiny", ("tiny",), {"size": (1, 1)}),
    Variant("strip", "forest-path", "tiny", ("tiny",), {"size": (3, 400)}),
)

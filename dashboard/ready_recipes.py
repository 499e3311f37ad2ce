"""The recipes Pixelmill ships with; installed by `manage.py pixelmill_setup`, never overwriting an admin's edits."""

from __future__ import annotations

from django.db import transaction

from dashboard.models import Recipe, RecipeOutput
from jobs.operations import Operation, build_operation
from jobs.rendering import OutputSpec


def pair(name: str, width: int, height: int, fit: str) -> list[dict]:
    """The same variant as JPEG and WebP."""
    return [
        {"name": name, "width": width, "height": height, "fit": fit, "format": "jpeg"},
        {"name": f"{name}-webp", "width": width, "height": height, "fit": fit, "format": "webp"},
    ]


READY_RECIPES = [
    {
        "name": "E-commerce pack",
        "slug": "ecommerce-pack",
        "description": (
            "Product cut out from a plain or studio backdrop, centred on white, in three shop sizes; "
            "a photo that cannot be cut out cleanly is used whole, and the gallery says so."
        ),
        "steps": [
            ("remove_background", {"if_unsuitable": "keep"}),
            ("canvas", {"background": "#ffffff", "margin": 0.08, "aspect": "1:1"}),
        ],
        "outputs": pair("thumbnail", 150, 150, "pad")
        + pair("product", 800, 800, "pad")
        + pair("zoom", 2000, 2000, "pad"),
    },
    {
        "name": "Social ads pack",
        "slug": "social-ads-pack",
        "description": "The photo in its own colours, cropped around its subject for each ad placement.",
        # No enhance: an automatic white balance and contrast stretch recoloured products (warm wood
        # turned grey); a pack that ships untouched colours is the one shoppers can trust.
        "steps": [("smart_crop", {})],
        "outputs": [
            {"name": "facebook", "width": 1200, "height": 628, "fit": "fill", "format": "jpeg"},
            {"name": "instagram", "width": 1080, "height": 1080, "fit": "fill", "format": "jpeg"},
            {"name": "instagram-story", "width": 1080, "height": 1920, "fit": "fill", "format": "jpeg"},
            # Google display ads take files up to 150 KB.
            {
                "name": "display-300x250",
                "width": 300,
                "height": 250,
                "fit": "fill",
                "format": "jpeg",
                "max_kb": 150,
            },
            {
                "name": "display-728x90",
                "width": 728,
                "height": 90,
                "fit": "fill",
                "format": "jpeg",
                "max_kb": 150,
            },
        ],
    },
    {
        "name": "Sale banner",
        "slug": "sale-banner",
        "description": "A 1.91:1 banner around the subject with a “20% OFF” badge and the brand logo.",
        "steps": [
            ("smart_crop", {"aspect": "1200:628"}),
            ("text_overlay", {"text": "20% OFF", "position": "top-left"}),
            ("watermark", {"logo": "pixelmill-logo.png", "position": "bottom-right"}),
        ],
        "outputs": pair("banner", 1200, 628, "fill") + pair("banner-small", 600, 314, "fill"),
    },
]


@transaction.atomic
def install_ready_recipes() -> list[Recipe]:
    """Create the ready recipes that do not exist yet; returns the ones created."""
    created = []
    for spec in READY_RECIPES:
        if Recipe.objects.filter(slug=spec["slug"]).exists():
            continue
        recipe = Recipe.objects.create(name=spec["name"], slug=spec["slug"], description=spec["description"])
        for position, (operation, params) in enumerate(spec["steps"], start=1):
            recipe.steps.create(position=position, operation=operation, params=params)
        for position, output in enumerate(spec["outputs"], start=1):
            recipe.outputs.create(position=position, **output)
        recipe.publish_version()
        created.append(recipe)
    return created


def ready_pipeline(slug: str) -> tuple[list[Operation], list[OutputSpec]]:
    """A ready recipe's steps and output specs as a worker would build them, without the database."""
    recipe = next(recipe for recipe in READY_RECIPES if recipe["slug"] == slug)
    steps = [build_operation(name, params) for name, params in recipe["steps"]]
    return steps, [RecipeOutput(**output).as_spec() for output in recipe["outputs"]]

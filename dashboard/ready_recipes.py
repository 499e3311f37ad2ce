"""The recipes Pixelmill ships with; installed by `manage.py pixelmill_setup`, never overwriting an admin's edits."""

from __future__ import annotations

from django.db import transaction

from dashboard.models import Recipe, RecipeOutput
from jobs.operations import Operation, build_operation
from jobs.outputs import OutputSpec


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


# Steps the ready recipes shipped with before, which an install that nobody edited still has: those are
# brought up to date (a new version), edited ones never are. Issue 12: the Social ads pack's enhance
# recoloured photos, and the E-commerce pack refused every photo it could not cut out.
SUPERSEDED_STEPS = {
    "social-ads-pack": [[("enhance", {}), ("smart_crop", {})]],
    "ecommerce-pack": [
        [("remove_background", {}), ("canvas", {"background": "#ffffff", "margin": 0.08, "aspect": "1:1"})]
    ],
}


@transaction.atomic
def upgrade_ready_recipes() -> list[Recipe]:
    """Ready recipes still exactly as an earlier Pixelmill shipped them, moved to today's steps and published
    as a new version (running campaigns keep the version they started with); returns the ones upgraded."""
    upgraded = []
    for spec in READY_RECIPES:
        recipe = Recipe.objects.filter(slug=spec["slug"]).first()
        if recipe is None:
            continue
        steps = [(step.operation, step.params) for step in recipe.steps.order_by("position")]
        outputs = [
            {field: getattr(output, field) for field in shipped}
            for output, shipped in zip(recipe.outputs.order_by("position"), spec["outputs"], strict=False)
        ]
        untouched = outputs == spec["outputs"] and recipe.outputs.count() == len(spec["outputs"])
        if not untouched or [list(s) for s in steps] not in [
            [list(step) for step in old] for old in SUPERSEDED_STEPS.get(spec["slug"], [])
        ]:
            continue
        recipe.steps.all().delete()
        for position, (operation, params) in enumerate(spec["steps"], start=1):
            recipe.steps.create(position=position, operation=operation, params=params)
        Recipe.objects.filter(pk=recipe.pk).update(description=spec["description"])
        recipe.publish_version()
        upgraded.append(recipe)
    return upgraded


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

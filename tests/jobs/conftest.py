"""Fixtures for the provider tests: a real simulator on a real socket, and providers pointed at it."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from simulator import ProviderSimulator, SimulatorConfig

SIM_KEY_ENV = "PIXELMILL_SIM_KEY"


@pytest.fixture
def simulator(monkeypatch):
    monkeypatch.setenv(SIM_KEY_ENV, "sim-key")
    with ProviderSimulator(SimulatorConfig(key="sim-key")) as sim:
        yield sim


@pytest.fixture
def make_provider(db, simulator):
    """Provider rows aimed at the simulator; `kind` doubles as the slug unless one is given."""
    from dashboard.models import Provider

    def make(kind: str, **fields) -> Provider:
        slug = fields.pop("slug", f"sim-{kind}")
        defaults = {
            "name": fields.pop("name", f"Simulated {kind}"),
            "kind": kind,
            "base_url": simulator.url(kind),
            "api_key_env": SIM_KEY_ENV,
            "requests_per_second": 50.0,
            "concurrency": 4,
            "timeout_seconds": 5.0,
        }
        return Provider.objects.create(slug=slug, **{**defaults, **fields})

    return make


def make_remote_recipe(name: str, steps: list[tuple], outputs: list[dict] | None = None):
    """A recipe from (operation, params, provider, fallback) steps, published as version 1."""
    from dashboard.models import Recipe

    recipe = Recipe.objects.create(name=name, slug=name.lower().replace(" ", "-"))
    for position, (operation, params, provider, *fallback) in enumerate(steps):
        recipe.steps.create(
            position=position,
            operation=operation,
            params=params,
            provider=provider,
            fallback=fallback[0] if fallback else None,
        )
    for position, spec in enumerate(outputs or [{"name": "square", "width": 200, "height": 200}]):
        recipe.outputs.create(position=position, **{"fit": "pad", "format": "png", **spec})
    recipe.publish_version()
    return recipe


def add_source(campaign, data: bytes, name: str = "product.jpg"):
    from dashboard.models import SourceImage
    from jobs.imaging import probe_image

    info = probe_image(data)
    sha = hashlib.sha256(data).hexdigest()
    key = default_storage.save(f"sources/c{campaign.pk}/{sha}.jpg", ContentFile(data))
    return SourceImage.objects.create(
        campaign=campaign, sha256=sha, display_name=name, file=key, width=info.width, height=info.height,
        format=info.format, byte_size=len(data),
    )  # fmt: skip

"""Fixtures for the provider tests: a real simulator on a real socket, and providers pointed at it."""

from __future__ import annotations

import pytest

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

"""A local stand-in for the AI image providers we call, for tests, benchmarks and trying things out."""

from simulator.config import DEFAULT_KEY, PRESETS, PROVIDERS, SimulatorConfig
from simulator.log_analysis import max_in_flight, requests_before_deadline
from simulator.server import ProviderSimulator

__all__ = [
    "DEFAULT_KEY",
    "PRESETS",
    "PROVIDERS",
    "ProviderSimulator",
    "SimulatorConfig",
    "max_in_flight",
    "requests_before_deadline",
]

"""How the provider simulator behaves: its settings, their validation and the fault presets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

PROVIDERS = ("pixelpanda", "removebg", "photoroom", "rembg", "fal")
DEFAULT_KEY = "sim-key"

# What `fail_next` may force. "ok" means: no injected fault for this request (limits still apply).
FORCEABLE_OUTCOMES = ("ok", "429", "503", "500", "400", "402", "reset", "timeout")
# One uniform draw per request is compared with these probabilities in this order, so they add up.
FAULT_ORDER = (
    ("p429", "429"),
    ("p503", "503"),
    ("p500", "500"),
    ("p_reset", "reset"),
    ("p_timeout", "timeout"),
    ("p400", "400"),
    ("p402", "402"),
)
PRESETS: dict[str, dict[str, float]] = {
    "chaos": {
        "p429": 0.2,
        "p503": 0.1,
        "p500": 0.0,
        "p_reset": 0.05,
        "p_timeout": 0.02,
        "p400": 0.01,
        "p402": 0.0,
    },
    "calm": {name: 0.0 for name, _ in FAULT_ORDER},
}

_GLOBAL_ONLY = frozenset({"seed", "files_kept", "log_limit", "log_path", "for_provider"})
_PROBABILITIES = tuple(name for name, _ in FAULT_ORDER)
_DURATIONS = (
    "latency_ms",
    "jitter_ms",
    "retry_after_seconds",
    "hang_seconds",
    "fal_queue_seconds",
    "fal_run_seconds",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves. Every field but the global ones (seed, files_kept, log_limit, log_path)
    can be changed for one provider through `for_provider`, a map of provider name to field changes.

    Probabilities are per request. `rate_per_second`/`burst` define a token bucket and `concurrency` an
    in-flight limit, each per provider (None: unlimited). `credits` is each provider's own balance (None:
    unlimited). `fail_next` forces the outcomes of the next requests, in order. `key` is the API key every
    provider expects (None: no auth), except self-hosted rembg, which checks one only when
    `for_provider["rembg"]` sets a key. `cheap_cutouts` answers background removal with a brightness
    threshold instead of our real segmentation (about 70 ms of CPU a call): for benchmarks, where the
    provider's own work must not run on the cores of the workers being measured (`latency_ms` stands for it).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_per_second: float | None = None
    burst: int = 1
    concurrency: int | None = None
    p429: float = 0.0
    p503: float = 0.0
    p500: float = 0.0
    p_reset: float = 0.0
    p_timeout: float = 0.0
    p400: float = 0.0
    p402: float = 0.0
    retry_after_seconds: float = 1.0
    hang_seconds: float = 3.0
    credits: int | None = None
    fail_next: tuple[str, ...] = ()
    key: str | None = DEFAULT_KEY
    fal_queue_seconds: float = 0.2
    fal_run_seconds: float = 0.3
    cheap_cutouts: bool = False
    seed: int = 0
    files_kept: int = 2000
    log_limit: int = 200_000
    log_path: str | None = None
    for_provider: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            _require_number(name, getattr(self, name), low=0.0, high=1.0)
        for name in _DURATIONS:
            _require_number(name, getattr(self, name), low=0.0)
        if self.rate_per_second is not None:
            _require_number("rate_per_second", self.rate_per_second, low=1e-6)
        _require_integer("burst", self.burst, low=1)
        if not isinstance(self.cheap_cutouts, bool):
            raise ValueError(f"cheap_cutouts must be true or false, not {self.cheap_cutouts!r}")
        _require_integer("seed", self.seed, low=None)
        _require_integer("files_kept", self.files_kept, low=1)
        _require_integer("log_limit", self.log_limit, low=1)
        if self.concurrency is not None:
            _require_integer("concurrency", self.concurrency, low=1)
        if self.credits is not None:
            _require_integer("credits", self.credits, low=0)
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError("key must be a non-empty text, or null for no authentication")
        if self.log_path is not None and not isinstance(self.log_path, str):
            raise ValueError("log_path must be a file path, or null")
        object.__setattr__(self, "fail_next", _forced_outcomes(self.fail_next))
        object.__setattr__(self, "for_provider", self._checked_overrides())

    def settings_for(self, provider: str) -> SimulatorConfig:
        """The settings one provider runs with: these, changed by its `for_provider` entry."""
        overrides = self.for_provider.get(provider)
        return replace(self, for_provider={}, **overrides) if overrides else self

    def changed(self, provider: str | None = None, **changes: Any) -> SimulatorConfig:
        """These settings with `changes` made globally, or for one `provider` only.

        Raises ValueError naming the unknown provider or setting, or the value that is out of range.
        """
        reject_unknown_fields(changes, provider=provider)
        if provider is None:
            return replace(self, **changes)
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
        overrides = {**self.for_provider.get(provider, {}), **changes}
        return replace(self, for_provider={**self.for_provider, provider: overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _checked_overrides(self) -> dict[str, dict[str, Any]]:
        if not isinstance(self.for_provider, Mapping):
            raise ValueError("for_provider must map provider names to settings")
        checked: dict[str, dict[str, Any]] = {}
        for provider, overrides in self.for_provider.items():
            if provider not in PROVIDERS:
                raise ValueError(
                    f"for_provider: unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}"
                )
            if not isinstance(overrides, Mapping):
                raise ValueError(f"for_provider[{provider!r}] must be an object of settings")
            reject_unknown_fields(overrides, provider=provider)
            # Building the provider's settings once validates every value now, not at its first request.
            settings = replace(self, for_provider={}, **overrides)
            checked[provider] = {name: getattr(settings, name) for name in overrides}
        return checked


def reject_unknown_fields(changes: Mapping[str, Any], *, provider: str | None) -> None:
    """ValueError listing the settings that do not exist (globally, or that one provider cannot change)."""
    allowed = {f.name for f in fields(SimulatorConfig)}
    if provider is not None:
        allowed -= _GLOBAL_ONLY
    unknown = sorted(set(changes) - allowed)
    if unknown:
        scope = f"for provider {provider!r}" if provider else "for the simulator"
        raise ValueError(
            f"unknown setting(s) {scope}: {', '.join(unknown)}; expected: {', '.join(sorted(allowed))}"
        )


def _require_number(name: str, value: object, *, low: float, high: float | None = None) -> None:
    valid = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or value < low or (high is not None and value > high):  # type: ignore[operator]
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValueError(f"{name} must be a number {bounds}, not {value!r}")


def _require_integer(name: str, value: object, *, low: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise ValueError(
            f"{name} must be an integer"
            + (f" of at least {low}" if low is not None else "")
            + f", not {value!r}"
        )


def _forced_outcomes(values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"fail_next must be a list of outcomes ({', '.join(FORCEABLE_OUTCOMES)})")
    outcomes = tuple(str(value).strip().lower() for value in values)
    unknown = [value for value in outcomes if value not in FORCEABLE_OUTCOMES]
    if unknown:
        raise ValueError(f"fail_next: unknown outcome(s) {unknown}; expected {', '.join(FORCEABLE_OUTCOMES)}")
    return outcomes

"""AI image providers: what each kind can do, and the settings a worker builds its client from.

Providers are configured in the admin (`dashboard.models.Provider`); a worker turns the row into a
frozen `ProviderConfig` when a task runs and builds its httpx client from that, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What each kind of provider can do for a recipe step. fal generates images from prompts instead.
KIND_OPERATIONS: dict[str, frozenset[str]] = {
    "pixelpanda": frozenset({"remove_background", "enhance", "upscale"}),
    "removebg": frozenset({"remove_background"}),
    "photoroom": frozenset({"remove_background"}),
    "rembg": frozenset({"remove_background"}),
    "fal": frozenset(),
}

PIXELPANDA_PATHS = {
    "remove_background": "/remove-background",
    "enhance": "/enhance",
    "upscale": "/upscale",
    "batch": "/batch",
}
REMBG_MODELS = ("u2net", "u2netp", "u2net_human_seg", "silueta", "isnet-general-use", "birefnet-general")


class ProviderConfigError(ValueError):
    """A provider's options are invalid; the message says which and why."""


def supports(kind: str, operation: str) -> bool:
    return operation in KIND_OPERATIONS.get(kind, frozenset())


def batches(kind: str, options: Mapping[str, Any] | None) -> bool:
    """Whether this provider takes a chain of operations in one call (PixelPanda's `/batch`), unless the
    admin switched it off with {"batch": false} (an API version without it)."""
    return kind == "pixelpanda" and bool((options or {}).get("batch", True))


@dataclass(frozen=True)
class ProviderConfig:
    slug: str
    name: str
    kind: str
    base_url: str
    api_key_env: str = ""
    requests_per_second: float = 5.0
    concurrency: int = 4
    timeout_seconds: float = 60.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def api_key(self) -> str:
        """Read from the environment at call time: the database and the logs never hold it."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def path(self, operation: str) -> str:
        paths: dict[str, str] = {**PIXELPANDA_PATHS, **(self.options.get("paths") or {})}
        return paths[operation]


def config_from_fields(
    slug: str, kind: str, base_url: str, options: Mapping[str, Any] | None
) -> ProviderConfig:
    """Validate the kind-specific options the admin typed; raises ProviderConfigError."""
    if kind not in KIND_OPERATIONS:
        raise ProviderConfigError(f"unknown kind {kind!r}; choose one of: {', '.join(KIND_OPERATIONS)}")
    options = dict(options or {})
    allowed = {
        "pixelpanda": {"paths", "batch"},
        "removebg": {"size", "type"},
        "photoroom": {"size"},
        "rembg": {"model", "alpha_matting"},
        "fal": {"model", "jwks_url"},
    }[kind]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ProviderConfigError(
            f"unknown option(s) {', '.join(unknown)} for {kind}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    paths = options.get("paths", {})
    if not isinstance(paths, dict) or any(
        key not in PIXELPANDA_PATHS or not isinstance(value, str) or not value.startswith("/")
        for key, value in paths.items()
    ):
        raise ProviderConfigError(
            'paths must map operations (remove_background, enhance, upscale, batch) to paths such as "/api/v2/upscale"'
        )
    if not isinstance(options.get("batch", True), bool):
        raise ProviderConfigError("batch must be true or false")
    if kind == "rembg" and options.get("model", "u2net") not in REMBG_MODELS:
        raise ProviderConfigError(f"model must be one of: {', '.join(REMBG_MODELS)}")
    if kind == "fal" and not isinstance(options.get("model", "fal-ai/flux/schnell"), str):
        raise ProviderConfigError('model must be a fal model id such as "fal-ai/flux/schnell"')
    return ProviderConfig(slug=slug, name=slug, kind=kind, base_url=base_url, options=options)

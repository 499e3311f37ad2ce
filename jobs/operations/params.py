"""Recipe step params: the reader that names the operation and parameter in every error, colours and aspects."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping

ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_ASPECT = re.compile(r"^\s*(\d{1,4})\s*:\s*(\d{1,4})\s*$")


class OperationParamsError(ValueError):
    """A recipe step's parameters are invalid; the message names the operation and parameter."""


# --- colours and aspect ratios, shared with jobs.outputs and jobs.rendering -------------------------


def normalise_colour(value: object, *, allow_transparent: bool = False) -> str:
    """Canonical "#rrggbb" (or "transparent") for "#rgb"/"#rrggbb"; raises ValueError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if allow_transparent and text == "transparent":
            return "transparent"
        if _HEX_COLOUR.match(text):
            digits = text[1:]
            if len(digits) == 3:
                digits = "".join(c * 2 for c in digits)
            return "#" + digits
    expected = '"#rgb", "#rrggbb"' + (' or "transparent"' if allow_transparent else "")
    raise ValueError(f"a colour written {expected}")


def colour_rgb(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of a canonical "#rrggbb" colour."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def normalise_aspect(value: object) -> str:
    """Canonical reduced "W:H" for an aspect ratio such as "16:9" or "2:2"; raises ValueError."""
    match = _ASPECT.match(value) if isinstance(value, str) else None
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if width and height and 0.1 <= width / height <= 10:
            divisor = math.gcd(width, height)
            return f"{width // divisor}:{height // divisor}"
    raise ValueError('an aspect ratio written "W:H" (for example "1:1" or "16:9"), between 1:10 and 10:1')


def aspect_ratio(aspect: str) -> float:
    width, height = aspect.split(":")
    return int(width) / int(height)


class ParamReader:
    """Reads one operation's params, naming the operation and the parameter in every error."""

    def __init__(self, operation: str, params: Mapping[str, object] | None, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise OperationParamsError(f"{operation}: parameters must be an object of name/value pairs")
        unknown = sorted(str(key) for key in params if key not in allowed)
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            expected = ", ".join(allowed) or "none"
            raise OperationParamsError(f"{operation}: unknown parameter {listed}; expected: {expected}")
        self.operation = operation
        self.params = params

    def error(self, key: str, requirement: str) -> OperationParamsError:
        return OperationParamsError(f"{self.operation}: '{key}' must be {requirement}")

    def _get(self, key: str, default: object) -> object:
        # JSON null means "use the default", which is what an emptied admin field sends.
        value = self.params.get(key)
        return default if value is None else value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._get(key, default)
        valid = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not valid or not low <= value <= high:  # type: ignore[operator]
            raise self.error(key, f"a number between {low:g} and {high:g}")
        return float(value)  # type: ignore[arg-type]

    def integer(self, key: str, default: int, choices: tuple[int, ...]) -> int:
        value = self._get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or value not in choices:
            raise self.error(key, "one of " + ", ".join(str(c) for c in choices))
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "true or false")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise self.error(key, "one of " + ", ".join(choices))
        return value.strip().lower()

    def colour(
        self, key: str, default: str, *, allow_transparent: bool = False, allow_none: bool = False
    ) -> str:
        value = self._get(key, default)
        if allow_none and isinstance(value, str) and value.strip().lower() in ("none", "transparent"):
            return "none"
        try:
            return normalise_colour(value, allow_transparent=allow_transparent)
        except ValueError as exc:
            requirement = str(exc) + (' or "none"' if allow_none else "")
            raise self.error(key, requirement) from None

    def aspect(self, key: str) -> str | None:
        value = self.params.get(key)
        if value is None or value == "":
            return None
        try:
            return normalise_aspect(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def text(self, key: str, max_length: int) -> str:
        value = self.params.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"a non-empty text of at most {max_length} characters")
        value = " ".join(value.split())
        if len(value) > max_length:
            raise self.error(key, f"at most {max_length} characters (it has {len(value)})")
        if any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co") for char in value):
            raise self.error(key, "plain text without control characters")
        return value

    def asset(self, key: str, default: str) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not ASSET_NAME.match(value) or ".." in value:
            raise self.error(key, "the file name of an uploaded logo, such as 'pixelmill-logo.png'")
        return value

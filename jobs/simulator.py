"""A local stand-in for the AI image providers we call (PixelPanda, remove.bg, Photoroom, rembg, fal): their
wire formats over a real socket, our own operations doing the image work, faults on demand, and a request log
that tests and benchmarks read to prove how our client behaved."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import heapq
import hmac
import io
import json
import logging
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

from jobs.errors import PermanentError
from jobs.imaging import decode_image
from jobs.operations import OperationContext, OperationParamsError, build_operation

logger = logging.getLogger(__name__)

PROVIDERS = ("pixelpanda", "removebg", "photoroom", "rembg", "fal")
DEFAULT_KEY = "sim-key"
FAL_WEBHOOK_USER_ID = "sim-user"

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

# Uploads larger than this are refused before they are read: a simulator must not be the thing that runs out
# of memory in a benchmark.
MAX_BODY_BYTES = 64 * 1024 * 1024
# remove.bg documents 500 images per minute by default; we report it when no rate limit is configured.
REMOVEBG_DEFAULT_LIMIT = 500

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
_FILE_NAME = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|webp)")
_HOST_HEADER = re.compile(r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")
_HEX_COLOUR = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")
_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


# --- configuration ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves. Every field but the global ones (seed, files_kept, log_limit, log_path)
    can be changed for one provider through `for_provider`, a map of provider name to field changes.

    Probabilities are per request. `rate_per_second`/`burst` define a token bucket and `concurrency` an
    in-flight limit, each per provider (None: unlimited). `credits` is each provider's own balance (None:
    unlimited). `fail_next` forces the outcomes of the next requests, in order. `key` is the API key every
    provider expects (None: no auth), except self-hosted rembg, which checks one only when
    `for_provider["rembg"]` sets a key.
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
            _reject_unknown_fields(overrides, provider=provider)
            # Building the provider's settings once validates every value now, not at its first request.
            settings = replace(self, for_provider={}, **overrides)
            checked[provider] = {name: getattr(settings, name) for name in overrides}
        return checked


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


def _reject_unknown_fields(changes: Mapping[str, Any], *, provider: str | None) -> None:
    allowed = {f.name for f in fields(SimulatorConfig)}
    if provider is not None:
        allowed -= _GLOBAL_ONLY
    unknown = sorted(set(changes) - allowed)
    if unknown:
        scope = f"for provider {provider!r}" if provider else "for the simulator"
        raise ValueError(
            f"unknown setting(s) {scope}: {', '.join(unknown)}; expected: {', '.join(sorted(allowed))}"
        )


# --- the request log and what it proves ------------------------------------------------------------------------


def max_in_flight(entries: Iterable[Mapping[str, Any]], provider: str | None = None) -> int:
    """The most provider calls open at one instant: the peak number of overlapping [started, ended] intervals.

    Only "api" entries count (downloads, control calls and webhooks are not calls to a provider), and only
    `provider`'s when given. Intervals that merely touch (one ends when the next starts) do not overlap.
    """
    events: list[tuple[float, int]] = []
    for entry in entries:
        if entry.get("kind", "api") != "api" or (provider is not None and entry.get("provider") != provider):
            continue
        if entry.get("ended") is None:
            continue
        events.append((entry["started"], 1))
        events.append((entry["ended"], -1))
    # At equal times -1 sorts before +1, so touching intervals are never counted together.
    events.sort()
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def requests_before_deadline(
    entries: Iterable[Mapping[str, Any]], grace_seconds: float = 0.0
) -> list[dict[str, Any]]:
    """Calls that did not honour a Retry-After: made after a 429 reached the client, before its deadline.

    The rule, per provider: call C breaks 429 answer R when

        R.ended + grace_seconds < C.started < R.retry_deadline

    A call that started before R ended (plus `grace_seconds` for R's trip back to the client and the client's
    own bookkeeping) was already in flight, or sent, before the client could have read R, so it could not
    have known. Only "api" entries count. Each offending entry is returned once, ordered by `started`.
    """
    by_provider: dict[Any, list[Mapping[str, Any]]] = {}
    for entry in entries:
        if entry.get("kind", "api") == "api":
            by_provider.setdefault(entry.get("provider"), []).append(entry)
    offending: list[dict[str, Any]] = []
    for calls in by_provider.values():
        windows = sorted(
            (call["ended"] + grace_seconds, call["retry_deadline"])
            for call in calls
            if call.get("status") == 429
            and call.get("retry_deadline") is not None
            and call.get("ended") is not None
        )
        # Sweep: with every window that opened before t seen, t is inside one iff the latest deadline is after t.
        latest_deadline = -math.inf
        index = 0
        for call in sorted(calls, key=lambda c: c["started"]):
            started = call["started"]
            while index < len(windows) and windows[index][0] < started:
                latest_deadline = max(latest_deadline, windows[index][1])
                index += 1
            if started < latest_deadline:
                offending.append(dict(call))
    offending.sort(key=lambda c: c["started"])
    return offending


# --- fal images --------------------------------------------------------------------------------------------------

FAL_IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
# A custom size may not exceed 2048×2048 pixels: generated images are held in memory.
FAL_MAX_PIXELS = 2048 * 2048


def render_fal_image(prompt: str, seed: int, index: int, size: tuple[int, int]) -> bytes:
    """A JPEG that is a pure function of (prompt, seed, index) at `size`: a gradient, a few shapes, the prompt.

    Same inputs, same bytes; another seed or index, another picture. Geometry is drawn in normalised
    coordinates, so one prompt and seed look alike at every size.
    """
    digest = hashlib.sha256(json.dumps([prompt, seed, index]).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    width, height = size
    start, end = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    pixels = start * (1 - ramp[..., None]) + end * ramp[..., None]
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(-0.1, 0.9) * width, rng.uniform(-0.1, 0.8) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * width, y0 + rng.uniform(0.1, 0.5) * height
        colour = (*(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(150, 231)))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=colour)

    words = " ".join(prompt.split()[:4])
    if words:
        pixels_high = max(8, height // 14)
        font = ImageFont.load_default(size=pixels_high)
        draw.text(
            (width * 0.05, height * 0.9 - pixels_high),
            words,
            font=font,
            fill=(255, 255, 255, 240),
            stroke_width=max(1, pixels_high // 12),
            stroke_fill=(0, 0, 0, 170),
        )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --- one request -------------------------------------------------------------------------------------------------


class _Refusal(Exception):
    """The request cannot be served as sent; rendered in the provider's own error format."""

    def __init__(
        self, status: int, message: str, code: str, *, outcome: str = "bad_request", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.outcome = outcome
        self.field = field


@dataclass
class _Answer:
    """What to send back, decided before it is sent; `action` "reset"/"timeout" sends nothing at all."""

    status: int | None
    outcome: str
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    retry_as_date: bool = False
    action: str | None = None
    hang_seconds: float = 0.0
    request_id: str | None = None


def _json_answer(
    status: int,
    body: object,
    outcome: str,
    *,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> _Answer:
    return _Answer(
        status=status,
        outcome=outcome,
        body=json.dumps(body).encode(),
        headers=headers or {},
        request_id=request_id,
    )


@dataclass
class _Form:
    fields: dict[str, str]
    files: dict[str, bytes]


class _Call:
    """One request as it arrived, plus what the log will say about it."""

    def __init__(self, handler: _Handler, seq: int, started: float) -> None:
        split = urlsplit(handler.path)
        self.handler = handler
        self.seq = seq
        self.started = started
        self.method = handler.command
        self.path = split.path
        self.query = parse_qs(split.query)
        self.headers: Message = handler.headers
        self.body = b""
        self.kind = "api"
        self.provider: str | None = None
        self.endpoint: str | None = None
        self.input_sha256: str | None = None
        self.request_id: str | None = None
        self.answered = False

    @property
    def host(self) -> str:
        """host[:port] the client addressed, for the URLs we hand out; our own address if it looks odd."""
        host = (self.headers.get("Host") or "").strip()
        if _HOST_HEADER.fullmatch(host):
            return host
        server_host, port = self.handler.server.server_address[:2]
        return f"{server_host}:{port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def json_object(self) -> dict[str, Any]:
        if isinstance(self._json, _Refusal):
            raise self._json
        return self._json

    def form(self) -> _Form:
        if isinstance(self._form, _Refusal):
            raise self._form
        return self._form

    # Parsed once: the input is peeked at for the log before the format's handler reads it again.
    @functools.cached_property
    def _json(self) -> dict[str, Any] | _Refusal:
        try:
            payload = json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if isinstance(payload, dict):
            return payload
        return _Refusal(400, "The request body must be a JSON object.", "invalid_json")

    @functools.cached_property
    def _form(self) -> _Form | _Refusal:
        try:
            return _parse_form(self.headers.get("Content-Type", ""), self.body)
        except ValueError as error:
            return _Refusal(400, f"Could not read the form: {error}", "invalid_form")

    def is_json(self) -> bool:
        return self.headers.get_content_type() == "application/json"

    def take_input(self, data: bytes) -> bytes:
        self.input_sha256 = hashlib.sha256(data).hexdigest()
        return data


def _parse_form(content_type: str, body: bytes) -> _Form:
    """Fields and files of a multipart/form-data or urlencoded body; ValueError when it is neither."""
    header = Message()
    header["Content-Type"] = content_type
    kind = header.get_content_type()
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return _Form({name: values[-1] for name, values in pairs.items()}, {})
    if kind != "multipart/form-data":
        raise ValueError("expected multipart/form-data")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("the multipart body has no boundary")
    form = _Form({}, {})
    # The email package would parse this too, but it walks a multi-megabyte image line by line.
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("a multipart part has no header")
        headers = BytesHeaderParser().parsebytes(head.lstrip(b"\r\n") + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("a multipart part has no name")
        content = content.removesuffix(b"\r\n")
        if headers.get_filename() is not None:
            form.files[name] = content
        else:
            form.fields[name] = content.decode("utf-8", "replace")
    return form


# --- image work shared by the formats ----------------------------------------------------------------------------


def _cut_out(image: Image.Image, feather: float | None = None) -> Image.Image:
    params = {} if feather is None else {"feather": feather}
    return (
        build_operation("remove_background", params).apply(image, OperationContext.default()).convert("RGBA")
    )


def _fit_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop_to_subject(image: Image.Image) -> Image.Image:
    box = image.getchannel("A").point(lambda v: 255 if v > 16 else 0).getbbox()
    return image.crop(box) if box else image


def _encode(
    image: Image.Image, file_format: str, background: tuple[int, int, int] | None = None
) -> tuple[bytes, str]:
    """Bytes and content type: png (RGBA, or the mask itself for "L"), jpg or webp; flattened over `background`."""
    buffer = io.BytesIO()
    if image.mode == "L":
        image.save(buffer, "PNG", compress_level=3)
        return buffer.getvalue(), _CONTENT_TYPES["png"]
    rgba = image.convert("RGBA")
    if background is not None or file_format == "jpg":
        backdrop = Image.new("RGBA", rgba.size, (*(background or (255, 255, 255)), 255))
        rgba = Image.alpha_composite(backdrop, rgba)
    if file_format == "jpg":
        rgba.convert("RGB").save(buffer, "JPEG", quality=90)
    elif file_format == "webp":
        rgba.save(buffer, "WEBP", quality=90)
    else:
        file_format = "png"
        rgba.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue(), _CONTENT_TYPES[file_format]


def _parse_colour(value: str, name: str = "bg_color") -> tuple[int, int, int]:
    text = value.strip()
    if _HEX_COLOUR.fullmatch(text):
        text = "#" + text
    try:
        colour = ImageColor.getrgb(text)
    except ValueError:
        raise _Refusal(
            400, f"{name} {value!r} is not a colour (a hex code such as 81d4fa, or a name).", "invalid_color"
        ) from None
    return colour[0], colour[1], colour[2]


def _parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise _Refusal(400, f"{name} must be true or false, not {value!r}.", "invalid_parameter", field=name)


def _parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise _Refusal(
            400,
            f"{name} must be an integer from {low} to {high}, not {value!r}.",
            "invalid_parameter",
            field=name,
        )
    return number


def _uncertainty(alpha: Image.Image) -> float:
    """Share of pixels the mask is unsure about (neither fully kept nor fully removed)."""
    values = np.asarray(alpha)
    return round(float(np.mean((values > 0) & (values < 255))), 4)


# --- the five wire formats ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    endpoint: str
    billable: bool
    handle: Callable[[_Call, SimulatorConfig], _Answer]


# Injected and limit answers: (status, message, code) unless a format says otherwise.
_FAULTS = {
    "429": (429, "Rate limit exceeded", "rate_limit_exceeded"),
    "503": (503, "Service temporarily unavailable, please try again later", "service_unavailable"),
    "500": (500, "Internal server error", "internal_error"),
    "400": (400, "The image could not be processed", "invalid_image"),
    "402": (402, "Insufficient credits", "insufficient_credits"),
}
_FAULT_OUTCOMES = {
    "429": "injected_429",
    "503": "http_503",
    "500": "http_500",
    "400": "injected_400",
    "402": "injected_402",
}


class _Format(ABC):
    """One provider's wire format: its paths, how it reads its key, and how its errors look."""

    name: ClassVar[str]
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {}
    # A self-hosted server checks a key only when one is configured for it in particular.
    self_hosted: ClassVar[bool] = False
    # remove.bg reports its rate limit (X-RateLimit-*) on every answer.
    reports_rate_limit: ClassVar[bool] = False

    def __init__(self, simulator: ProviderSimulator) -> None:
        self.sim = simulator

    @abstractmethod
    def route(self, method: str, segments: list[str]) -> _Route | None:
        """The endpoint for `method` on the path below the provider's prefix; None for a 404."""

    @abstractmethod
    def presented_key(self, headers: Message) -> str | None:
        """The API key the request carries, "" for a header of the wrong shape, None for none."""

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"detail": message}

    def error(self, status: int, message: str, code: str, outcome: str, field: str | None = None) -> _Answer:
        return _json_answer(status, self.error_body(status, message, code, field), outcome)

    def auth_failure(self, missing: bool) -> _Answer:
        message = "Missing API key" if missing else "Invalid API key"
        return self.error(401, message, "unauthorized", "unauthorized")

    def refusal_for(self, error: PermanentError) -> _Refusal:
        """Our operations' refusal (an unreadable file, a busy background) as this provider would word it."""
        return _Refusal(400, error.message, error.code)

    def fault(self, kind: str, settings: SimulatorConfig) -> _Answer:
        if kind == "reset":
            return _Answer(status=None, outcome="reset", action="reset")
        if kind == "timeout":
            return _Answer(
                status=None, outcome="timeout", action="timeout", hang_seconds=settings.hang_seconds
            )
        status, message, code = self.fault_messages.get(kind) or _FAULTS[kind]
        answer = self.error(status, message, code, _FAULT_OUTCOMES[kind])
        if kind == "429":
            answer.retry_after = settings.retry_after_seconds
            answer.retry_as_date = self.sim._next_injected_429_uses_date()
        return answer

    def image_input(
        self, call: _Call, *, data: bytes | None, b64: object = None, url: object = None
    ) -> bytes:
        """The input image from exactly one of upload bytes, base64 text or a URL of one of our files."""
        given = [source for source in (data, b64, url) if source not in (None, "", b"")]
        if len(given) != 1:
            raise _Refusal(
                400, "Send exactly one image (a file, base64 data or an image_url).", "missing_image"
            )
        if data:
            return call.take_input(data)
        if b64:
            if not isinstance(b64, str):
                raise _Refusal(400, "image_base64 must be base64 text.", "invalid_image")
            text = b64.split(",", 1)[1] if b64.startswith("data:") else b64
            try:
                return call.take_input(base64.b64decode("".join(text.split()), validate=True))
            except (binascii.Error, ValueError):
                raise _Refusal(400, "image_base64 is not valid base64.", "invalid_image") from None
        return call.take_input(self.sim._stored_input(call, url))

    def peek_input(self, call: _Call) -> None:
        """Note the input image's hash before judging the request, so refused calls log what they carried."""
        try:
            if call.is_json():
                payload = call.json_object()
                self.image_input(
                    call, data=None, b64=payload.get("image_base64"), url=payload.get("image_url")
                )
            elif call.method == "POST" and call.body:
                form = call.form()
                data = form.files.get("image_file") or form.files.get("file")
                b64, url = form.fields.get("image_file_b64"), form.fields.get("image_url")
                self.image_input(call, data=data, b64=b64, url=url)
        except _Refusal:
            pass  # the handler refuses it properly, if it gets that far


class _PixelPanda(_Format):
    name = "pixelpanda"
    operations: ClassVar[dict[str, str]] = {
        "remove-background": "remove_background",
        "remove_background": "remove_background",
        "enhance": "enhance",
        "upscale": "upscale",
    }

    def route(self, method: str, segments: list[str]) -> _Route | None:
        # Our client appends "/remove-background" to the base URL; the SDK uses "/api/v1/..." or "/api/v2/...".
        if method != "POST" or not segments or segments[:-1] not in ([], ["api", "v1"], ["api", "v2"]):
            return None
        endpoint = segments[-1]
        if endpoint not in ("remove-background", "enhance", "upscale", "batch"):
            return None
        return _Route(endpoint, True, functools.partial(self.process, endpoint=endpoint))

    def presented_key(self, headers: Message) -> str | None:
        return _authorization(headers, "Bearer")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"status": "error", "error": message, "detail": message, "code": code}

    def process(self, call: _Call, settings: SimulatorConfig, *, endpoint: str) -> _Answer:
        payload = call.json_object()
        data = self.image_input(
            call, data=None, b64=payload.get("image_base64"), url=payload.get("image_url")
        )
        if endpoint == "batch":
            steps = self._batch_steps(payload.get("operations"))
        elif endpoint == "upscale":
            steps = [("upscale", {"factor": _scale_factor(payload.get("scale_factor", 2))})]
        else:
            steps = [(self.operations[endpoint], {})]
        began = time.perf_counter()
        image = decode_image(data)
        for name, params in steps:
            image = build_operation(name, params).apply(image, OperationContext.default())
        encoded, _ = _encode(image, "png")
        url = self.sim._store_file(call.base, encoded, "png")
        request_id = "pp_" + uuid.uuid4().hex[:24]
        body = {
            "status": "success",
            "processed_url": url,
            "execution_time_ms": round((time.perf_counter() - began) * 1000),
            "request_id": request_id,
        }
        return _json_answer(200, body, "ok", request_id=request_id)

    def _batch_steps(self, operations: object) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(operations, list) or not 1 <= len(operations) <= 10:
            raise _Refusal(400, "operations must be a list of 1 to 10 steps.", "invalid_operations")
        steps: list[tuple[str, dict[str, Any]]] = []
        for step in operations:
            name = step.get("operation") if isinstance(step, dict) else None
            if name not in self.operations:
                choices = "remove-background, enhance, upscale"
                raise _Refusal(
                    400, f"Unknown operation {name!r}; expected one of {choices}.", "invalid_operations"
                )
            params = {"factor": _scale_factor(step.get("scale_factor", 2))} if name == "upscale" else {}
            steps.append((self.operations[name], params))
        return steps


def _scale_factor(value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value not in (2, 4):
        raise _Refusal(400, f"scale_factor must be 2 or 4, not {value!r}.", "invalid_scale_factor")
    return int(value)  # type: ignore[call-overload]


class _RemoveBg(_Format):
    name = "removebg"
    reports_rate_limit = True
    unknown_foreground = (
        "Could not identify foreground in image. For details and recommendations see "
        "https://www.remove.bg/supported-images."
    )
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "400": (400, unknown_foreground, "unknown_foreground"),
    }
    # Largest output per `size`, in pixels (None: the original size).
    sizes: ClassVar[dict[str, int | None]] = {
        "preview": 250_000,
        "small": 250_000,
        "regular": 250_000,
        "medium": 1_500_000,
        "hd": 4_000_000,
        "full": None,
        "4k": None,
        "50mp": None,
        "auto": None,
    }
    types = ("auto", "person", "product", "car", "animal", "graphic", "transportation")

    def route(self, method: str, segments: list[str]) -> _Route | None:
        if method == "POST" and segments == ["v1.0", "removebg"]:
            return _Route("removebg", True, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return headers.get("X-Api-Key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"errors": [{"title": message, "code": code}]}

    def auth_failure(self, missing: bool) -> _Answer:
        message = "Missing API Key" if missing else "API Key invalid"
        return self.error(403, message, "auth_failed", "unauthorized")

    def refusal_for(self, error: PermanentError) -> _Refusal:
        if error.code in ("no_plain_background", "no_subject"):
            return _Refusal(400, self.unknown_foreground, "unknown_foreground")
        return _Refusal(400, error.message, "invalid_image")

    def process(self, call: _Call, settings: SimulatorConfig) -> _Answer:
        form = call.form()
        data = self.image_input(
            call,
            data=form.files.get("image_file"),
            b64=form.fields.get("image_file_b64"),
            url=form.fields.get("image_url"),
        )
        size = form.fields.get("size", "auto").strip().lower()
        if size not in self.sizes:
            raise _Refusal(400, f"Invalid size {size!r}.", "invalid_size")
        subject_type = form.fields.get("type", "auto").strip().lower()
        if subject_type not in self.types:
            raise _Refusal(400, f"Invalid type {subject_type!r}.", "invalid_type")
        file_format = {"auto": "png", "png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}.get(
            form.fields.get("format", "auto").strip().lower()
        )
        if file_format is None:
            raise _Refusal(400, "Invalid format: use auto, png, jpg or webp.", "invalid_format")
        background = _parse_colour(form.fields["bg_color"]) if form.fields.get("bg_color") else None
        crop = _parse_bool(form.fields.get("crop"), "crop")
        channels = form.fields.get("channels", "rgba").strip().lower()
        if channels not in ("rgba", "alpha"):
            raise _Refusal(400, "Invalid channels: use rgba or alpha.", "invalid_channels")

        cutout = _cut_out(_fit_pixels(decode_image(data), self.sizes[size]))
        if crop:
            cutout = _crop_to_subject(cutout)
        output = cutout.getchannel("A") if channels == "alpha" else cutout
        encoded, content_type = _encode(output, file_format, background)
        headers = {
            "X-Credits-Charged": "1",
            "X-Width": str(output.width),
            "X-Height": str(output.height),
            "X-Type": "product" if subject_type == "auto" else subject_type,
        }
        return _Answer(status=200, outcome="ok", body=encoded, content_type=content_type, headers=headers)


class _Photoroom(_Format):
    name = "photoroom"
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "402": (
            402,
            "You have exhausted your API credits; upgrade your plan to continue.",
            "payment_required",
        ),
    }
    sizes: ClassVar[dict[str, int | None]] = {
        "preview": 250_000,
        "medium": 1_500_000,
        "hd": 4_000_000,
        "full": None,
    }

    def route(self, method: str, segments: list[str]) -> _Route | None:
        if method == "POST" and segments == ["v1", "segment"]:
            return _Route("segment", True, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return headers.get("x-api-key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"detail": message, "status_code": status, "type": code}

    def process(self, call: _Call, settings: SimulatorConfig) -> _Answer:
        form = call.form()
        data = self.image_input(call, data=form.files.get("image_file"))
        file_format = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}.get(
            form.fields.get("format", "png").strip().lower()
        )
        if file_format is None:
            raise _Refusal(400, "format must be png, jpg or webp.", "invalid_format")
        size = form.fields.get("size", "full").strip().lower()
        if size not in self.sizes:
            raise _Refusal(400, "size must be preview, medium, hd or full.", "invalid_size")
        background = _parse_colour(form.fields["bg_color"]) if form.fields.get("bg_color") else None
        crop = _parse_bool(form.fields.get("crop"), "crop")

        cutout = _cut_out(_fit_pixels(decode_image(data), self.sizes[size]))
        score = _uncertainty(cutout.getchannel("A"))
        if crop:
            cutout = _crop_to_subject(cutout)
        encoded, content_type = _encode(cutout, file_format, background)
        headers = {"x-uncertainty-score": f"{score:.4f}"}
        return _Answer(status=200, outcome="ok", body=encoded, content_type=content_type, headers=headers)


class _Rembg(_Format):
    name = "rembg"
    self_hosted = True
    models = (
        "u2net",
        "u2netp",
        "u2net_human_seg",
        "u2net_cloth_seg",
        "silueta",
        "isnet-general-use",
        "isnet-anime",
        "sam",
        "birefnet-general",
        "birefnet-general-lite",
        "birefnet-portrait",
        "birefnet-dis",
        "birefnet-hrsod",
        "birefnet-cod",
        "birefnet-massive",
        "bria-rmbg",
    )

    def route(self, method: str, segments: list[str]) -> _Route | None:
        if method == "POST" and segments == ["api", "remove"]:
            # Self-hosted: nobody bills for it, so it never runs out of credits.
            return _Route("remove", False, self.process)
        return None

    def presented_key(self, headers: Message) -> str | None:
        return _authorization(headers, "Bearer")

    def auth_failure(self, missing: bool) -> _Answer:
        return self.error(
            401, "Not authenticated" if missing else "Invalid API key", "unauthorized", "unauthorized"
        )

    def process(self, call: _Call, settings: SimulatorConfig) -> _Answer:
        form = call.form()
        data = self.image_input(call, data=form.files.get("file"))
        model = form.fields.get("model", "u2net").strip()
        if model not in self.models:
            raise _Refusal(
                400, f"Unknown model {model!r}; available: {', '.join(self.models)}.", "invalid_model"
            )
        matting = _parse_bool(form.fields.get("a"), "a")
        foreground = _parse_int(form.fields.get("af"), "af", 240, 0, 255)
        background = _parse_int(form.fields.get("ab"), "ab", 10, 0, 255)
        erode = _parse_int(form.fields.get("ae"), "ae", 10, 0, 255)
        only_mask = _parse_bool(form.fields.get("om"), "om")
        post_process = _parse_bool(form.fields.get("ppm"), "ppm")

        # Alpha matting widens the soft edge by about half the erode size; af/ab are its trimap thresholds.
        cutout = _cut_out(decode_image(data), feather=min(20.0, erode / 2) if matting else None)
        alpha = cutout.getchannel("A")
        if matting:
            alpha = alpha.point(lambda v: 255 if v >= foreground else 0 if v <= background else v)
        if post_process:
            # rembg's post-processing smooths the mask and makes it binary.
            alpha = alpha.filter(ImageFilter.GaussianBlur(1)).point(lambda v: 255 if v >= 128 else 0)
        if only_mask:
            output = alpha
        else:
            cutout.putalpha(alpha)
            output = cutout
        encoded, content_type = _encode(output, "png")
        return _Answer(status=200, outcome="ok", body=encoded, content_type=content_type)


@dataclass
class _FalRequest:
    """One queued fal generation; its status follows from the clock and whether its images exist."""

    request_id: str
    app_id: str
    base: str
    prompt: str
    seed: int
    size: tuple[int, int]
    num_images: int
    webhook: str | None
    submitted: float  # time.monotonic()
    starts: float  # leaves the queue
    due: float  # finishes running
    cancelled: bool = False
    result: dict[str, Any] | None = None
    inference_time: float | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/fal/{self.app_id}/requests/{self.request_id}"

    def status(self, now: float) -> str:
        if self.cancelled:
            return "CANCELLED"
        if self.result is not None:
            return "COMPLETED"
        return "IN_PROGRESS" if now >= self.starts else "IN_QUEUE"


class _Fal(_Format):
    name = "fal"
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {
        "402": (
            402,
            "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
            "locked",
        ),
    }

    def route(self, method: str, segments: list[str]) -> _Route | None:
        if len(segments) >= 4 and segments[2] == "requests":
            app_id, request_id, tail = "/".join(segments[:2]), segments[3], segments[4:]
            if method == "GET" and tail == []:
                return _Route(
                    "result", False, functools.partial(self.result, app_id=app_id, request_id=request_id)
                )
            if method == "GET" and tail == ["status"]:
                return _Route(
                    "status", False, functools.partial(self.status, app_id=app_id, request_id=request_id)
                )
            if method == "PUT" and tail == ["cancel"]:
                return _Route(
                    "cancel", False, functools.partial(self.cancel, app_id=app_id, request_id=request_id)
                )
            return None
        if method == "POST" and len(segments) >= 2:
            return _Route("submit", True, functools.partial(self.submit, app_id="/".join(segments[:2])))
        return None

    def presented_key(self, headers: Message) -> str | None:
        return _authorization(headers, "Key")

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        if field is not None:
            # Request validation errors come from pydantic, as a list.
            return {"detail": [{"loc": ["body", field], "msg": message, "type": code}]}
        return {"detail": message}

    def auth_failure(self, missing: bool) -> _Answer:
        message = "Authentication is required to access this application." if missing else "Invalid API key."
        return self.error(401, message, "unauthorized", "unauthorized")

    def submit(self, call: _Call, settings: SimulatorConfig, *, app_id: str) -> _Answer:
        payload = call.json_object()
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Refusal(422, "field required", "value_error.missing", field="prompt")
        seed = payload.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise _Refusal(
                422, "value is not a valid non-negative integer", "type_error.integer", field="seed"
            )
        num_images = payload.get("num_images", 1)
        if not isinstance(num_images, int) or isinstance(num_images, bool) or not 1 <= num_images <= 4:
            raise _Refusal(
                422, "ensure this value is between 1 and 4", "value_error.number", field="num_images"
            )
        size = _fal_image_size(payload.get("image_size", "landscape_4_3"))
        webhook = (call.query.get("fal_webhook") or [None])[-1]
        if webhook is not None and urlsplit(webhook).scheme not in ("http", "https"):
            raise _Refusal(400, "fal_webhook must be an http(s) URL.", "invalid_webhook")
        request, position = self.sim._fal_submit(
            call.base, app_id, prompt, seed, size, num_images, webhook, settings
        )
        call.request_id = request.request_id
        body = {
            "request_id": request.request_id,
            "response_url": request.url,
            "status_url": request.url + "/status",
            "cancel_url": request.url + "/cancel",
            "queue_position": position,
        }
        return _json_answer(200, body, "ok", request_id=request.request_id)

    def status(self, call: _Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> _Answer:
        request, status, position = self.sim._fal_lookup(app_id, request_id)
        call.request_id = request_id
        if status == "IN_QUEUE":
            body: dict[str, Any] = {"status": status, "queue_position": position, "response_url": request.url}
            return _json_answer(202, body, "ok", request_id=request_id)
        if status == "IN_PROGRESS":
            body = {"status": status, "logs": [], "response_url": request.url}
            return _json_answer(202, body, "ok", request_id=request_id)
        if status == "COMPLETED":
            body = {
                "status": status,
                "logs": [],
                "metrics": {"inference_time": request.inference_time},
                "response_url": request.url,
            }
            return _json_answer(200, body, "ok", request_id=request_id)
        return _json_answer(200, {"status": status}, "ok", request_id=request_id)

    def result(self, call: _Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> _Answer:
        request, status, _ = self.sim._fal_lookup(app_id, request_id)
        call.request_id = request_id
        if status == "COMPLETED":
            return _json_answer(200, request.result, "ok", request_id=request_id)
        if status == "CANCELLED":
            raise _Refusal(400, "Request was cancelled", "cancelled")
        raise _Refusal(400, "Request is still in progress", "in_progress")

    def cancel(self, call: _Call, settings: SimulatorConfig, *, app_id: str, request_id: str) -> _Answer:
        call.request_id = request_id
        if self.sim._fal_cancel(app_id, request_id):
            return _json_answer(202, {"status": "CANCELLATION_REQUESTED"}, "ok", request_id=request_id)
        return _json_answer(400, {"status": "ALREADY_COMPLETED"}, "bad_request", request_id=request_id)


def _fal_image_size(value: object) -> tuple[int, int]:
    if isinstance(value, str) and value in FAL_IMAGE_SIZES:
        return FAL_IMAGE_SIZES[value]
    if isinstance(value, dict):
        width, height = value.get("width"), value.get("height")
        numbers = all(
            isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in (width, height)
        )
        if numbers and width * height <= FAL_MAX_PIXELS:  # type: ignore[operator]
            return int(width), int(height)  # type: ignore[arg-type]
    choices = ", ".join(FAL_IMAGE_SIZES)
    message = f"image_size must be one of {choices} or {{width, height}} of 16..4096 px, at most {FAL_MAX_PIXELS:,} pixels"
    raise _Refusal(422, message, "value_error", field="image_size")


def _authorization(headers: Message, scheme: str) -> str | None:
    value = headers.get("Authorization")
    if value is None:
        return None
    found, _, token = value.strip().partition(" ")
    return token.strip() if found.lower() == scheme.lower() else ""


# --- runtime state -----------------------------------------------------------------------------------------------


@dataclass
class _TokenBucket:
    tokens: float
    at: float  # time.monotonic() of the last refill

    def refill(self, rate: float, burst: int, now: float) -> float:
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.at) * rate)
        self.at = now
        return self.tokens

    def take(self, rate: float, burst: int, now: float) -> float:
        """0.0 when a token was taken, otherwise the seconds until one is free."""
        if self.refill(rate, burst, now) >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


@dataclass
class _ProviderState:
    bucket: _TokenBucket
    in_flight: int = 0
    credits_left: int | None = None
    fail_next: deque[str] = field(default_factory=deque)


# --- the server --------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 would drop some of them.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: ProviderSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away mid-request (as our fault tests make them) are routine, not tracebacks on stderr.
        logger.debug("Connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the simulator; connections stay open between requests (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the second waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    # An idle keep-alive connection gives its thread back eventually.
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.simulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.simulator._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.simulator._handle(self)

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # The simulator's own request log says more than an access log would.
        logger.debug(format, *args)


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _read_body(handler: _Handler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            line = handler.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "Malformed chunked body") from None
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413, "Request body too large")
            if size == 0:
                while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline(1024)
    length = handler.headers.get("Content-Length")
    if not length:
        return b""
    try:
        size = int(length)
    except ValueError:
        raise _BodyError(400, "Invalid Content-Length") from None
    if size < 0:
        raise _BodyError(400, "Invalid Content-Length")
    if size > MAX_BODY_BYTES:
        raise _BodyError(413, "Request body too large")
    body = handler.rfile.read(size)
    if len(body) < size:
        raise _BodyError(400, "The request body ended early")
    return body


class ProviderSimulator:
    """Five provider wire formats on one local HTTP server, with limits and faults on demand and a request log.

        sim = ProviderSimulator(SimulatorConfig(p429=0.2))
        base = sim.start()              # "http://127.0.0.1:<port>"; sim.url("removebg") is remove.bg's base URL
        sim.configure(provider="removebg", fail_next=["429", "ok"])
        ...
        entries = sim.log()
        sim.stop()

    or `with ProviderSimulator(config) as sim:`. Nothing is listening until `start()`.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or SimulatorConfig()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._formats: dict[str, _Format] = {
            fmt.name: fmt
            for fmt in (_PixelPanda(self), _RemoveBg(self), _Photoroom(self), _Rembg(self), _Fal(self))
        }
        self._entries: deque[dict[str, Any]] = deque(maxlen=self._config.log_limit)
        self._log_file: IO[str] | None = None
        self._seq = 0
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._fal_requests: OrderedDict[str, _FalRequest] = OrderedDict()
        self._fal_due: list[tuple[float, int, str]] = []
        self._fal_wakeup = threading.Condition(self._lock)
        self._fal_pool: ThreadPoolExecutor | None = None
        # fal signs webhooks with a key only this simulator holds; receivers check it against our JWKS.
        self._signing_key = Ed25519PrivateKey.generate()
        self.base_url: str | None = None
        self._states: dict[str, _ProviderState] = {}
        self._reset_state()

    # --- lifecycle ---

    def start(self) -> str:
        """Listen and serve on background threads; returns the base URL, e.g. "http://127.0.0.1:8700"."""
        if self._server is not None:
            return self.base_url  # type: ignore[return-value]
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        self.base_url = f"http://{shown}:{port}"
        self._open_log_file(self._config.log_path)
        self._fal_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="simulator-fal")
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="simulator",
                daemon=True,
            ),
            threading.Thread(target=self._run_fal_queue, name="simulator-fal-queue", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; requests still hanging or sleeping are cut short, open connections closed."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        with self._fal_wakeup:
            self._fal_wakeup.notify_all()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._fal_pool is not None:
            self._fal_pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        self._server = None

    def __enter__(self) -> ProviderSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The simulator is not running.")
        return int(self._server.server_address[1])

    def url(self, provider: str) -> str:
        """The base URL to configure for `provider`; our client appends the provider's own path to it."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if self.base_url is None:
            raise RuntimeError("The simulator is not running.")
        return f"{self.base_url}/{provider}"

    def urls(self) -> dict[str, str]:
        return {provider: self.url(provider) for provider in PROVIDERS}

    # --- behaviour ---

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def configure(
        self, provider: str | None = None, *, preset: str | None = None, **changes: Any
    ) -> SimulatorConfig:
        """Change settings while running: globally, or for one `provider`; `preset` applies first.

        Setting `credits` refills the balance, `fail_next` re-arms the queue, `rate_per_second` or `burst`
        refill the bucket and `seed` re-seeds the random faults. Raises ValueError naming what is wrong.
        """
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        changes = {**PRESETS.get(preset or "", {}), **changes}
        _reject_unknown_fields(changes, provider=provider)
        with self._lock:
            old = self._config
            if provider is None:
                new = replace(old, **changes)
            elif provider not in PROVIDERS:
                raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
            else:
                overrides = {**old.for_provider.get(provider, {}), **changes}
                new = replace(old, for_provider={**old.for_provider, provider: overrides})
            self._config = new
            self._apply_changes(new, provider, set(changes))
        if provider is None and "log_path" in changes and self._server is not None:
            self._open_log_file(new.log_path)
        return new

    def reset(self) -> None:
        """Clear the log and return the runtime state to what the config says: RNG, buckets, credits, fail_next.

        Stored files and fal requests stay: a client may still be fetching them.
        """
        with self._lock:
            self._entries.clear()
            self._seq = 0
            self._reset_state()

    def log(self, kind: str | None = None) -> list[dict[str, Any]]:
        """A copy of the request log in arrival order; `kind` keeps only "api", "download", "control" or "webhook"."""
        with self._lock:
            entries = [dict(entry) for entry in self._entries if kind is None or entry["kind"] == kind]
        return sorted(entries, key=lambda entry: entry["seq"])

    def describe(self) -> dict[str, Any]:
        """Config and live state (credits left, queued outcomes, tokens, calls in flight), as /_sim/config shows."""
        now = time.monotonic()
        with self._lock:
            config = self._config
            providers = {}
            for name, state in self._states.items():
                settings = config.settings_for(name)
                tokens = None
                if settings.rate_per_second is not None:
                    tokens = round(state.bucket.refill(settings.rate_per_second, settings.burst, now), 3)
                providers[name] = {
                    "in_flight": state.in_flight,
                    "credits_left": state.credits_left,
                    "fail_next": list(state.fail_next),
                    "tokens": tokens,
                }
            state = {"fail_next": list(self._fail_next), "providers": providers}
        urls = self.urls() if self.base_url is not None else {}
        return {"config": config.to_dict(), "state": state, "urls": urls}

    # --- runtime state (callers hold self._lock unless said otherwise) ---

    def _reset_state(self) -> None:
        config = self._config
        self._faults_rng = random.Random(config.seed)
        # Jitter and fal seeds draw from their own generator, so changing latency leaves the fault sequence alone.
        self._other_rng = random.Random(config.seed + 1)
        self._injected_429s = 0
        self._fail_next: deque[str] = deque(config.fail_next)
        now = time.monotonic()
        previous = self._states
        self._states = {}
        for provider in PROVIDERS:
            settings = config.settings_for(provider)
            self._states[provider] = _ProviderState(
                bucket=_TokenBucket(float(settings.burst), now),
                # Calls still running stay counted: they will give their slot back when they end.
                in_flight=previous[provider].in_flight if provider in previous else 0,
                credits_left=settings.credits,
                fail_next=deque(config.for_provider.get(provider, {}).get("fail_next", ())),
            )

    def _apply_changes(self, new: SimulatorConfig, provider: str | None, changed: set[str]) -> None:
        if provider is None and "log_limit" in changed:
            self._entries = deque(self._entries, maxlen=new.log_limit)
        if provider is None and "seed" in changed:
            self._faults_rng = random.Random(new.seed)
            self._other_rng = random.Random(new.seed + 1)
        if provider is None and "fail_next" in changed:
            self._fail_next = deque(new.fail_next)
        everyone = provider is None or "for_provider" in changed
        now = time.monotonic()
        for name in PROVIDERS if everyone else (provider,):
            state, settings = self._states[name], new.settings_for(name)  # type: ignore[index]
            if changed & {"credits", "for_provider"}:
                state.credits_left = settings.credits
            if changed & {"rate_per_second", "burst", "for_provider"}:
                state.bucket = _TokenBucket(float(settings.burst), now)
            if (provider is not None and "fail_next" in changed) or "for_provider" in changed:
                state.fail_next = deque(new.for_provider.get(name, {}).get("fail_next", ()))

    def _next_injected_429_uses_date(self) -> bool:
        # Alternate exactly, so any run of injected 429s exercises both Retry-After forms.
        with self._lock:
            self._injected_429s += 1
            return self._injected_429s % 2 == 0

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _open_log_file(self, path: str | None) -> None:
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by stop()

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    # --- requests ---

    def _handle(self, handler: _Handler) -> None:
        call = _Call(handler, self._next_seq(), time.time())
        try:
            call.body = _read_body(handler)
        except _BodyError as error:
            # What is left of the body cannot be told apart from the next request: close after answering.
            handler.close_connection = True
            self._respond(call, _json_answer(error.status, {"detail": error.message}, "bad_request"))
            return
        except OSError:
            handler.close_connection = True
            return
        try:
            self._route(call)
        except Exception:
            logger.exception("The provider simulator failed on %s %s", call.method, call.path)
            if not call.answered:
                self._respond(
                    call, _json_answer(500, {"detail": "The simulator itself failed."}, "simulator_error")
                )

    def _route(self, call: _Call) -> None:
        segments = [segment for segment in call.path.split("/") if segment]
        head = segments[0] if segments else ""
        if head == "_sim":
            call.kind, call.endpoint = "control", "/".join(segments[1:])
            self._respond(call, self._control(call, segments[1:]))
        elif head == "files":
            call.kind, call.endpoint = "download", "files"
            self._respond(call, self._download(call, segments[1:]))
        elif (
            head == "fal" and segments[1:] == [".well-known", "jwks.json"] and call.method in ("GET", "HEAD")
        ):
            call.kind, call.provider, call.endpoint = "download", "fal", "jwks"
            self._respond(call, _json_answer(200, self._jwks(), "ok"))
        elif head in self._formats:
            fmt = self._formats[head]
            call.provider = fmt.name
            route = fmt.route(call.method, segments[1:])
            if route is None:
                call.endpoint = "/".join(segments[1:])
                self._respond(call, fmt.error(404, "Not Found", "not_found", "not_found"))
            else:
                call.endpoint = route.endpoint
                self._serve(call, fmt, route)
        else:
            call.endpoint = call.path
            self._respond(call, _json_answer(404, {"detail": "Not Found"}, "not_found"))

    def _serve(self, call: _Call, fmt: _Format, route: _Route) -> None:
        """Auth, limits, credits and faults in the order a real provider would meet them; then the work."""
        settings = self._config.settings_for(fmt.name)
        fmt.peek_input(call)
        forced = self._pop_forced(fmt.name)
        answer: _Answer | None = None
        admitted = charged = False
        if forced is not None and forced != "ok":
            answer = fmt.fault(forced, settings)
        if answer is None:
            answer = self._check_key(call, fmt, settings)
        if answer is None:
            answer = self._admit(fmt, settings)
            admitted = answer is None
        if answer is None and route.billable:
            answer = self._charge(fmt, settings)
            charged = answer is None and settings.credits is not None
        if answer is None and forced is None:
            kind = self._draw_fault(settings)
            answer = fmt.fault(kind, settings) if kind else None
        release = functools.partial(self._release, fmt.name) if admitted else None
        try:
            self._pause(settings)
            if answer is None:
                answer = self._work(call, fmt, route, settings)
        except BaseException:
            if release is not None:
                release()
            raise
        if charged and not (answer.status is not None and 200 <= answer.status < 300):
            self._refund(fmt.name)
        if fmt.reports_rate_limit and answer.status is not None:
            answer.headers.update(self._rate_limit_headers(fmt.name, settings))
        self._respond(call, answer, before_send=release)

    def _work(self, call: _Call, fmt: _Format, route: _Route, settings: SimulatorConfig) -> _Answer:
        try:
            return route.handle(call, settings)
        except _Refusal as refusal:
            return fmt.error(refusal.status, refusal.message, refusal.code, refusal.outcome, refusal.field)
        except OperationParamsError as error:
            return fmt.error(400, str(error), "invalid_parameters", "bad_request")
        except PermanentError as error:
            refusal = fmt.refusal_for(error)
            return fmt.error(refusal.status, refusal.message, refusal.code, refusal.outcome)
        except Exception as error:
            # A bug here must still look like a provider's 500, so the client's retry path is what gets tested.
            logger.exception("The provider simulator failed on %s %s", call.method, call.path)
            return fmt.error(
                500, f"Simulator error: {type(error).__name__}", "internal_error", "simulator_error"
            )

    def _pop_forced(self, provider: str) -> str | None:
        with self._lock:
            queue = self._states[provider].fail_next or self._fail_next
            return queue.popleft() if queue else None

    def _check_key(self, call: _Call, fmt: _Format, settings: SimulatorConfig) -> _Answer | None:
        key = settings.key
        if fmt.self_hosted and "key" not in self._config.for_provider.get(fmt.name, {}):
            key = None  # nobody configures a key for their own rembg unless they mean to
        if key is None:
            return None
        presented = fmt.presented_key(call.headers)
        if presented is not None and hmac.compare_digest(presented.encode(), key.encode()):
            return None
        return fmt.auth_failure(missing=presented is None)

    def _admit(self, fmt: _Format, settings: SimulatorConfig) -> _Answer | None:
        with self._lock:
            state = self._states[fmt.name]
            if settings.concurrency is not None and state.in_flight >= settings.concurrency:
                wait, outcome = settings.retry_after_seconds, "concurrency_limited"
            elif settings.rate_per_second is not None and (
                bucket_wait := state.bucket.take(settings.rate_per_second, settings.burst, time.monotonic())
            ):
                # Whole seconds, at least one: the earliest time asking again can succeed.
                wait, outcome = max(1, math.ceil(bucket_wait)), "rate_limited"
            else:
                state.in_flight += 1
                return None
        status, message, code = fmt.fault_messages.get("429") or _FAULTS["429"]
        answer = fmt.error(status, message, code, outcome)
        answer.retry_after = wait
        return answer

    def _release(self, provider: str) -> None:
        with self._lock:
            self._states[provider].in_flight -= 1

    def _charge(self, fmt: _Format, settings: SimulatorConfig) -> _Answer | None:
        # A credit is reserved up front and refunded on failure, so parallel calls cannot overspend.
        with self._lock:
            state = self._states[fmt.name]
            if state.credits_left is None:
                return None
            if state.credits_left > 0:
                state.credits_left -= 1
                return None
        status, message, code = fmt.fault_messages.get("402") or _FAULTS["402"]
        return fmt.error(status, message, code, "credits")

    def _refund(self, provider: str) -> None:
        with self._lock:
            state = self._states[provider]
            if state.credits_left is not None:
                state.credits_left += 1

    def _draw_fault(self, settings: SimulatorConfig) -> str | None:
        with self._lock:
            draw = self._faults_rng.random()
        threshold = 0.0
        for name, kind in FAULT_ORDER:
            threshold += getattr(settings, name)
            if draw < threshold:
                return kind
        return None

    def _pause(self, settings: SimulatorConfig) -> None:
        delay = settings.latency_ms
        if settings.jitter_ms:
            with self._lock:
                delay += self._other_rng.uniform(0, settings.jitter_ms)
        if delay > 0:
            self._stopping.wait(delay / 1000)

    def _rate_limit_headers(self, provider: str, settings: SimulatorConfig) -> dict[str, str]:
        wall = time.time()
        if settings.rate_per_second is None:
            limit = remaining = REMOVEBG_DEFAULT_LIMIT
            reset = math.ceil(wall)
        else:
            with self._lock:
                tokens = self._states[provider].bucket.refill(
                    settings.rate_per_second, settings.burst, time.monotonic()
                )
            limit, remaining = settings.burst, math.floor(tokens)
            reset = math.ceil(wall + (settings.burst - tokens) / settings.rate_per_second)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def _respond(self, call: _Call, answer: _Answer, before_send: Callable[[], None] | None = None) -> None:
        """Log the exchange, then send `answer` (or break the connection as it says).

        Logged first, so whoever has read an answer finds it in the log. `ended` is taken just before, so a
        request sent after the client read this answer always has a later `started`; the concurrency slot
        is given back at that moment for the same reason.
        """
        handler = call.handler
        call.answered = True
        if answer.action == "timeout":
            self._stopping.wait(answer.hang_seconds)
        headers = dict(answer.headers)
        retry_after = retry_deadline = None
        if before_send is not None:
            before_send()
        ended = time.time()
        if answer.retry_after is not None:
            if answer.retry_as_date:
                # HTTP-dates have whole seconds: name the first one at or after the wait we mean.
                retry_deadline = float(math.ceil(ended + answer.retry_after))
                headers["Retry-After"] = formatdate(retry_deadline, usegmt=True)
                retry_after = retry_deadline - ended
            else:
                seconds = math.ceil(answer.retry_after)
                headers["Retry-After"] = str(seconds)
                retry_after, retry_deadline = float(seconds), ended + seconds
        self._record(
            {
                "seq": call.seq,
                "kind": call.kind,
                "provider": call.provider,
                "endpoint": call.endpoint,
                "method": call.method,
                "path": call.path,
                "started": call.started,
                "ended": ended,
                "status": answer.status,
                "outcome": answer.outcome,
                "retry_after": retry_after,
                "retry_deadline": retry_deadline,
                "input_sha256": call.input_sha256,
                "request_id": answer.request_id or call.request_id,
            }
        )
        if answer.action is not None:
            self._break_connection(handler, reset=answer.action == "reset")
            return
        try:
            self._write(handler, call.method, answer, headers)
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _write(handler: _Handler, method: str, answer: _Answer, headers: dict[str, str]) -> None:
        assert answer.status is not None
        handler.send_response(answer.status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(answer.body)

    @staticmethod
    def _break_connection(handler: _Handler, *, reset: bool) -> None:
        handler.close_connection = True
        if not reset:
            return  # a timeout: the server closes the connection normally once we return, still without a word
        connection = handler.connection
        try:
            # Linger on with a zero timeout turns close() into an RST instead of a FIN.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket only really closes once the handler's reader lets go of it.
            handler.rfile.close()
            connection.close()
        except OSError:
            pass

    # --- control, downloads, files ---

    def _control(self, call: _Call, segments: list[str]) -> _Answer:
        action = "/".join(segments)
        if action == "config" and call.method == "GET":
            return _json_answer(200, self.describe(), "ok")
        if action == "config" and call.method == "POST":
            try:
                changes = call.json_object()
                provider = changes.pop("provider", None)
                preset = changes.pop("preset", None)
                self.configure(provider, preset=preset, **changes)
            except _Refusal as refusal:
                return _json_answer(400, {"detail": refusal.message}, "bad_request")
            except ValueError as error:
                return _json_answer(400, {"detail": str(error)}, "bad_request")
            return _json_answer(200, self.describe(), "ok")
        if action == "log" and call.method == "GET":
            kind = (call.query.get("kind") or [None])[-1]
            return _json_answer(200, {"entries": self.log(kind)}, "ok")
        if action == "reset" and call.method == "POST":
            self.reset()
            return _json_answer(200, {"status": "reset"}, "ok")
        if action == "health" and call.method == "GET":
            return _json_answer(200, {"status": "ok", "urls": self.urls()}, "ok")
        return _json_answer(404, {"detail": "Not Found"}, "not_found")

    def _download(self, call: _Call, segments: list[str]) -> _Answer:
        name = segments[0] if len(segments) == 1 else ""
        with self._lock:
            stored = self._files.get(name) if call.method in ("GET", "HEAD") else None
        if stored is None:
            return _json_answer(404, {"detail": "File not found"}, "not_found")
        data, content_type = stored
        return _Answer(status=200, outcome="ok", body=data, content_type=content_type)

    def _store_file(self, base: str, data: bytes, extension: str) -> str:
        name = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._files[name] = (data, _CONTENT_TYPES[extension])
            while len(self._files) > self._config.files_kept:
                self._files.popitem(last=False)
        return f"{base}/files/{name}"

    def _stored_input(self, call: _Call, url: object) -> bytes:
        """The bytes behind an image_url, which may only name one of our own files: no fetching from outside."""
        parts = urlsplit(url) if isinstance(url, str) else None
        own = {call.host, f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        name = parts.path.removeprefix("/files/") if parts else ""
        if (
            parts is None
            or parts.scheme != "http"
            or parts.netloc not in own
            or not _FILE_NAME.fullmatch(name)
        ):
            raise _Refusal(
                400, "image_url must point at a file this simulator serves (/files/...).", "invalid_image_url"
            )
        with self._lock:
            stored = self._files.get(name)
        if stored is None:
            raise _Refusal(400, "image_url names a file that does not exist (any more).", "invalid_image_url")
        return stored[0]

    # --- fal's queue and webhooks ---

    def _fal_submit(
        self,
        base: str,
        app_id: str,
        prompt: str,
        seed: int | None,
        size: tuple[int, int],
        num_images: int,
        webhook: str | None,
        settings: SimulatorConfig,
    ) -> tuple[_FalRequest, int]:
        now = time.monotonic()
        with self._fal_wakeup:
            if seed is None:
                seed = self._other_rng.randrange(2**31)
            position = sum(1 for other in self._fal_requests.values() if other.status(now) == "IN_QUEUE")
            starts = now + settings.fal_queue_seconds
            request = _FalRequest(
                request_id=str(uuid.uuid4()),
                app_id=app_id,
                base=base,
                prompt=prompt,
                seed=seed,
                size=size,
                num_images=num_images,
                webhook=webhook,
                submitted=now,
                starts=starts,
                due=starts + settings.fal_run_seconds,
            )
            self._fal_requests[request.request_id] = request
            while len(self._fal_requests) > self._config.files_kept:
                self._fal_requests.popitem(last=False)
            heapq.heappush(self._fal_due, (request.due, self._seq, request.request_id))
            self._fal_wakeup.notify_all()
        return request, position

    def _fal_lookup(self, app_id: str, request_id: str) -> tuple[_FalRequest, str, int]:
        now = time.monotonic()
        with self._lock:
            request = self._fal_requests.get(request_id)
            if request is None or request.app_id != app_id:
                raise _Refusal(404, "Request not found", "not_found", outcome="not_found")
            status = request.status(now)
            ahead = sum(
                1
                for other in self._fal_requests.values()
                if other.submitted < request.submitted and other.status(now) == "IN_QUEUE"
            )
        return request, status, ahead

    def _fal_cancel(self, app_id: str, request_id: str) -> bool:
        """True when the request is (now) cancelled; False when it had already completed."""
        with self._lock:
            request = self._fal_requests.get(request_id)
            if request is None or request.app_id != app_id:
                raise _Refusal(404, "Request not found", "not_found", outcome="not_found")
            if request.result is not None:
                return False
            request.cancelled = True
            return True

    def _run_fal_queue(self) -> None:
        while True:
            with self._fal_wakeup:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if self._fal_due and self._fal_due[0][0] <= now:
                        break
                    self._fal_wakeup.wait(self._fal_due[0][0] - now if self._fal_due else None)
                if self._stopping.is_set():
                    return
                _, _, request_id = heapq.heappop(self._fal_due)
                request = self._fal_requests.get(request_id)
            if request is not None and self._fal_pool is not None:
                try:
                    self._fal_pool.submit(self._complete_fal, request)
                except RuntimeError:
                    return  # the pool was shut down: we are stopping

    def _complete_fal(self, request: _FalRequest) -> None:
        try:
            with self._lock:
                cancelled = request.cancelled
            result = None if cancelled else self._generate_fal(request)
            with self._lock:
                if result is not None and not request.cancelled:
                    request.result = result
                    request.inference_time = result["timings"]["inference"]
                else:
                    result = None
            if request.webhook:
                if result is not None:
                    message: dict[str, Any] = {"status": "OK", "payload": result}
                else:
                    message = {"status": "ERROR", "error": "Request was cancelled", "payload": None}
                body = json.dumps(
                    {"request_id": request.request_id, "gateway_request_id": request.request_id, **message}
                )
                threading.Thread(
                    target=self._deliver_webhook,
                    args=(request.webhook, request.request_id, body.encode()),
                    name="simulator-webhook",
                    daemon=True,
                ).start()
        except Exception:
            logger.exception("The provider simulator failed to complete fal request %s", request.request_id)

    def _generate_fal(self, request: _FalRequest) -> dict[str, Any]:
        began = time.monotonic()
        images = []
        for index in range(request.num_images):
            data = render_fal_image(request.prompt, request.seed, index, request.size)
            url = self._store_file(request.base, data, "jpg")
            width, height = request.size
            images.append({"url": url, "width": width, "height": height, "content_type": "image/jpeg"})
        inference = round(request.due - request.starts + time.monotonic() - began, 4)
        return {
            "images": images,
            "seed": request.seed,
            "prompt": request.prompt,
            "has_nsfw_concepts": [False] * request.num_images,
            "timings": {"inference": inference},
        }

    def _deliver_webhook(self, url: str, request_id: str, body: bytes) -> None:
        """POST a signed webhook, retrying a few times as fal does; every attempt is logged as kind "webhook"."""
        for attempt, pause in enumerate((0.0, 0.5, 1.0, 2.0), start=1):
            if pause and self._stopping.wait(pause):
                return
            timestamp = str(int(time.time()))
            digest = hashlib.sha256(body).hexdigest()
            signed = "\n".join([request_id, FAL_WEBHOOK_USER_ID, timestamp, digest]).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Fal-Webhook-Request-Id": request_id,
                "X-Fal-Webhook-User-Id": FAL_WEBHOOK_USER_ID,
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": self._signing_key.sign(signed).hex(),
            }
            started = time.time()
            status: int | None = None
            try:
                with httpx.Client(timeout=5.0, trust_env=False) as client:
                    status = client.post(url, content=body, headers=headers).status_code
                outcome = "ok" if 200 <= status < 300 else f"http_{status}"
            except httpx.HTTPError as error:
                outcome = f"failed: {type(error).__name__}"
            self._record(
                {
                    "seq": self._next_seq(),
                    "kind": "webhook",
                    "provider": "fal",
                    "endpoint": "webhook",
                    "method": "POST",
                    "path": url,
                    "started": started,
                    "ended": time.time(),
                    "status": status,
                    "outcome": outcome,
                    "retry_after": None,
                    "retry_deadline": None,
                    "input_sha256": None,
                    "request_id": request_id,
                    "attempt": attempt,
                }
            )
            if outcome == "ok":
                return

    def _jwks(self) -> dict[str, Any]:
        raw = self._signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA", "kid": "simulator"}
            ]
        }

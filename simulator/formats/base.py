"""What every wire format has: routes, key checks, error bodies, injected faults and the input image."""

from __future__ import annotations

import base64
import binascii
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, ClassVar

from PIL import ImageColor

from jobs.errors import PermanentError
from simulator.calls import Answer, Call, Refusal, json_answer
from simulator.config import SimulatorConfig

if TYPE_CHECKING:
    from simulator.server import ProviderSimulator

_HEX_COLOUR = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")

# Injected and limit answers: (status, message, code) unless a format says otherwise.
FAULTS = {
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


@dataclass(frozen=True)
class Route:
    endpoint: str
    billable: bool
    handle: Callable[[Call, SimulatorConfig], Answer]


class Format(ABC):
    """One provider's wire format: its paths, how it reads its key, and how its errors look."""

    name: ClassVar[str]
    fault_messages: ClassVar[dict[str, tuple[int, str, str]]] = {}
    # A self-hosted server checks a key only when one is configured for it in particular.
    self_hosted: ClassVar[bool] = False

    def __init__(self, simulator: ProviderSimulator) -> None:
        self.sim = simulator

    @abstractmethod
    def route(self, method: str, segments: list[str]) -> Route | None:
        """The endpoint for `method` on the path below the provider's prefix; None for a 404."""

    @abstractmethod
    def presented_key(self, headers: Message) -> str | None:
        """The API key the request carries, "" for a header of the wrong shape, None for none."""

    def error_body(self, status: int, message: str, code: str, field: str | None) -> object:
        return {"detail": message}

    def error(self, status: int, message: str, code: str, outcome: str, field: str | None = None) -> Answer:
        return json_answer(status, self.error_body(status, message, code, field), outcome)

    def auth_failure(self, missing: bool) -> Answer:
        message = "Missing API key" if missing else "Invalid API key"
        return self.error(401, message, "unauthorized", "unauthorized")

    def refusal_for(self, error: PermanentError) -> Refusal:
        """Our operations' refusal (an unreadable file, a busy background) as this provider would word it."""
        return Refusal(400, error.message, error.code)

    def answer_headers(self, settings: SimulatorConfig) -> dict[str, str]:
        """Headers this provider puts on every answer it sends (remove.bg: its rate limit)."""
        return {}

    def limit_error(self, kind: str, outcome: str) -> Answer:
        """The answer when a limit ("429": rate or concurrency, "402": credits) turns a call away."""
        status, message, code = self.fault_messages.get(kind) or FAULTS[kind]
        return self.error(status, message, code, outcome)

    def fault(self, kind: str, settings: SimulatorConfig) -> Answer:
        if kind == "reset":
            return Answer(status=None, outcome="reset", action="reset")
        if kind == "timeout":
            return Answer(
                status=None, outcome="timeout", action="timeout", hang_seconds=settings.hang_seconds
            )
        answer = self.limit_error(kind, _FAULT_OUTCOMES[kind])
        if kind == "429":
            answer.retry_after = settings.retry_after_seconds
            answer.retry_as_date = self.sim.faults.next_injected_429_uses_date()
        return answer

    def image_input(self, call: Call, *, data: bytes | None, b64: object = None, url: object = None) -> bytes:
        """The input image from exactly one of upload bytes, base64 text or a URL of one of our files."""
        given = [source for source in (data, b64, url) if source not in (None, "", b"")]
        if len(given) != 1:
            raise Refusal(
                400, "Send exactly one image (a file, base64 data or an image_url).", "missing_image"
            )
        if data:
            return call.take_input(data)
        if b64:
            if not isinstance(b64, str):
                raise Refusal(400, "image_base64 must be base64 text.", "invalid_image")
            text = b64.split(",", 1)[1] if b64.startswith("data:") else b64
            try:
                return call.take_input(base64.b64decode("".join(text.split()), validate=True))
            except (binascii.Error, ValueError):
                raise Refusal(400, "image_base64 is not valid base64.", "invalid_image") from None
        port = self.sim.port
        own_hosts = {call.host, f"127.0.0.1:{port}", f"localhost:{port}"}
        return call.take_input(self.sim.files.read_url(url, own_hosts))

    def peek_input(self, call: Call) -> None:
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
        except Refusal:
            pass  # the handler refuses it properly, if it gets that far


def authorization(headers: Message, scheme: str) -> str | None:
    """The token of an `Authorization: <scheme> <token>` header; "" for another scheme, None for none."""
    value = headers.get("Authorization")
    if value is None:
        return None
    found, _, token = value.strip().partition(" ")
    return token.strip() if found.lower() == scheme.lower() else ""


def parse_colour(value: str, name: str = "bg_color") -> tuple[int, int, int]:
    text = value.strip()
    if _HEX_COLOUR.fullmatch(text):
        text = "#" + text
    try:
        colour = ImageColor.getrgb(text)
    except ValueError:
        raise Refusal(
            400, f"{name} {value!r} is not a colour (a hex code such as 81d4fa, or a name).", "invalid_color"
        ) from None
    return colour[0], colour[1], colour[2]


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise Refusal(400, f"{name} must be true or false, not {value!r}.", "invalid_parameter", field=name)


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise Refusal(
            400,
            f"{name} must be an integer from {low} to {high}, not {value!r}.",
            "invalid_parameter",
            field=name,
        )
    return number

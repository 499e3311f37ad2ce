"""One call to the simulator as it arrived (its form or JSON read once), and the answer decided for it."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from simulator.connection import Exchange

_HOST_HEADER = re.compile(r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")


class Refusal(Exception):
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
class Answer:
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


def json_answer(
    status: int,
    body: object,
    outcome: str,
    *,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> Answer:
    return Answer(
        status=status,
        outcome=outcome,
        body=json.dumps(body).encode(),
        headers=headers or {},
        request_id=request_id,
    )


@dataclass
class Form:
    fields: dict[str, str]
    files: dict[str, bytes]


class Call:
    """One request as it arrived, plus what the log will say about it."""

    def __init__(self, exchange: Exchange, seq: int, started: float) -> None:
        split = urlsplit(exchange.target)
        self.exchange = exchange
        self.seq = seq
        self.started = started
        # A provider's gateway counts a request against its limits when it arrives, not once its own
        # threads have read the body: this is when the request line and headers were read.
        self.arrived = time.monotonic()
        self.method = exchange.method
        self.path = split.path
        self.query = parse_qs(split.query)
        self.headers: Message = exchange.headers
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
        server_host, port = self.exchange.server_address
        return f"{server_host}:{port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def json_object(self) -> dict[str, Any]:
        if isinstance(self._json, Refusal):
            raise self._json
        return self._json

    def form(self) -> Form:
        if isinstance(self._form, Refusal):
            raise self._form
        return self._form

    # Parsed once: the input is peeked at for the log before the format's handler reads it again.
    @functools.cached_property
    def _json(self) -> dict[str, Any] | Refusal:
        try:
            payload = json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if isinstance(payload, dict):
            return payload
        return Refusal(400, "The request body must be a JSON object.", "invalid_json")

    @functools.cached_property
    def _form(self) -> Form | Refusal:
        try:
            return parse_form(self.headers.get("Content-Type", ""), self.body)
        except ValueError as error:
            return Refusal(400, f"Could not read the form: {error}", "invalid_form")

    def is_json(self) -> bool:
        return self.headers.get_content_type() == "application/json"

    def take_input(self, data: bytes) -> bytes:
        self.input_sha256 = hashlib.sha256(data).hexdigest()
        return data


def parse_form(content_type: str, body: bytes) -> Form:
    """Fields and files of a multipart/form-data or urlencoded body; ValueError when it is neither."""
    kind, options = parse_options_header(content_type)
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return Form({name: values[-1] for name, values in pairs.items()}, {})
    if kind != "multipart/form-data":
        raise ValueError("expected multipart/form-data")
    boundary = options.get("boundary")
    if not boundary:
        raise ValueError("the multipart body has no boundary")
    form = Form({}, {})
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    try:
        with PushMultipartParser(boundary, content_length=len(body)) as parser:
            for event in parser.parse(body):
                if isinstance(event, MultipartSegment):
                    if not event.name:
                        raise ValueError("a multipart part has no name")
                    segment, chunks = event, []
                elif event:
                    chunks.append(bytes(event))
                elif segment is not None:
                    content = b"".join(chunks)
                    if segment.filename is not None:
                        form.files[segment.name] = content
                    else:
                        form.fields[segment.name] = content.decode("utf-8", "replace")
    except MultipartError as error:
        raise ValueError(str(error)) from None
    return form

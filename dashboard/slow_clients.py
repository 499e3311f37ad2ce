"""What a slow client gets: a request body that arrives too slowly is cut off with a 408 (a WSGI middleware)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest

# At the default 500 bytes a second the first piece must come within its 20 s: 8 KB takes 16 s.
PIECE_BYTES = 8192


class RequestBodyTimeout(BadRequest):
    """The client sent its request body more slowly than PIXELMILL_REQUEST_BODY_MIN_RATE allows."""


class DeadlineBody:
    """A WSGI input whose reads must end by a deadline that each byte received pushes back by 1/min_rate s."""

    def __init__(self, stream: Any, *, timeout: float, min_rate: float) -> None:
        self.stream = stream
        self.deadline = time.monotonic() + timeout
        self.min_rate = min_rate
        self.timed_out = False

    def _before_deadline(self, read: Callable[[int], bytes], size: int) -> bytes:
        from gevent import Timeout

        remaining = self.deadline - time.monotonic()
        error = RequestBodyTimeout("The request body arrived too slowly")
        if self.timed_out or remaining <= 0:
            self.timed_out = True
            raise error
        try:
            # Interrupts a read that waits for bytes: only a cooperative (gevent) socket can be interrupted.
            with Timeout(remaining, error):
                data = read(size)
        except RequestBodyTimeout:
            self.timed_out = True
            raise
        self.deadline += len(data) / self.min_rate
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (to the end with -1), asked for a piece at a time: a server's read waits for all
        it was asked for, so one large read would hold a slow but steady client to a deadline it earns only
        once the read returns."""
        pieces = []
        wanted = -1 if size is None else size
        while wanted != 0:
            piece = self._before_deadline(
                self.stream.read, PIECE_BYTES if wanted < 0 else min(wanted, PIECE_BYTES)
            )
            if not piece:
                break
            pieces.append(piece)
            wanted = wanted - len(piece) if wanted > 0 else wanted
        return b"".join(pieces)

    def readline(self, size: int = -1) -> bytes:
        return self._before_deadline(self.stream.readline, size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class SlowBodyGuard:
    """WSGI middleware: a request body must arrive within PIXELMILL_REQUEST_BODY_TIMEOUT_SECONDS, plus one second
    per PIXELMILL_REQUEST_BODY_MIN_RATE bytes received (Apache's RequestReadTimeout body=20,MinRate=500); a
    slower client is answered 408 and its connection let go, so a trickling upload cannot hold the server.

    It needs cooperative sockets to interrupt a waiting read: active under gunicorn's gevent worker (`make run`,
    the image), a pass-through anywhere else (the test client, runserver).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        try:
            from gevent.monkey import is_module_patched
        except ImportError:
            self.active = False
        else:
            self.active = is_module_patched("socket")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        has_body = environ.get("CONTENT_LENGTH", "") not in ("", "0") or environ.get("HTTP_TRANSFER_ENCODING")
        if not (self.active and has_body):
            return self.app(environ, start_response)
        body = DeadlineBody(
            environ["wsgi.input"],
            timeout=settings.PIXELMILL_REQUEST_BODY_TIMEOUT_SECONDS,
            min_rate=settings.PIXELMILL_REQUEST_BODY_MIN_RATE,
        )
        environ["wsgi.input"] = body
        started: list[tuple[Any, ...]] = []

        def deferred_start_response(*args: Any) -> Callable[[bytes], None]:
            started.append(args)
            return lambda data: None  # Django never uses write()

        response = self.app(environ, deferred_start_response)
        if not body.timed_out:
            start_response(*started[0])
            return response
        # Django answered 400 to the exception from the body; say why instead. Gunicorn then gives the rest of
        # the body its keep-alive time (gunicorn_config.keepalive) to arrive and closes the connection.
        if hasattr(response, "close"):
            response.close()
        start_response("408 Request Timeout", [("Content-Type", "text/plain")])
        return [b"The request body arrived too slowly.\n"]

"""HTTP/1.1 over sockets: h11 reads requests and frames answers; resets and hangs use the raw socket."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import struct
from collections.abc import Callable
from email.message import Message
from email.utils import formatdate
from http import HTTPStatus

import h11

logger = logging.getLogger(__name__)

# Uploads larger than this are refused before they are read: a simulator must not be the thing that runs out
# of memory in a benchmark.
MAX_BODY_BYTES = 64 * 1024 * 1024
# An idle keep-alive connection gives its thread back eventually.
IDLE_SECONDS = 120
_READ_SIZE = 64 * 1024


class BodyError(Exception):
    """The request body cannot be read: too large, malformed, or cut short."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Exchange:
    """One request on a connection: its head, its body on demand, and one answer (or a reset, or silence)."""

    def __init__(self, connection: _Connection, request: h11.Request) -> None:
        self._connection = connection
        self.method = request.method.decode("ascii")
        self.target = request.target.decode("latin-1")
        self.headers = Message()
        for name, value in request.headers:
            self.headers[name.decode("latin-1")] = value.decode("latin-1")
        self.server_address: tuple[str, int] = connection.server_address

    def read_body(self) -> bytes:
        """The whole body, whether sent with a Content-Length or chunked; BodyError or OSError when it cannot be."""
        return self._connection.read_body(self.headers)

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """Answer; a connection that fails while we write is closed."""
        self._connection.send(status, headers, body, head=self.method == "HEAD")

    def hang_up(self) -> None:
        """Close the connection without a word, as a server that gave up would (a FIN, no answer)."""
        self._connection.open = False

    def reset(self) -> None:
        """Break the connection with a TCP reset, no answer."""
        self._connection.reset()


class _Connection:
    """One client socket driven by an h11 state machine; requests on it are served one after another."""

    def __init__(self, sock: socket.socket, server_address: tuple[str, int]) -> None:
        self.sock = sock
        self.server_address = server_address
        self.h11 = h11.Connection(h11.SERVER)
        self.open = True
        self.client_closed = False

    def serve(self, handle: Callable[[Exchange], None]) -> None:
        while self.open:
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as error:
                self._refuse_request(error)
                return
            if not isinstance(event, h11.Request):
                return  # the client closed the connection
            handle(Exchange(self, event))
            # Keep the connection only when both sides finished the exchange and neither asked to close.
            if not self.open or self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    def read_body(self, headers: Message) -> bytes:
        length = headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyError(413, "Request body too large")
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as error:
                if self.client_closed:
                    raise BodyError(400, "The request body ended early") from None
                raise BodyError(400, f"Malformed request body: {error}") from None
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > MAX_BODY_BYTES:
                    raise BodyError(413, "Request body too large")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise BodyError(400, "The request body ended early")

    def send(self, status: int, headers: dict[str, str], body: bytes, *, head: bool) -> None:
        fields = [*headers.items(), ("Date", formatdate(usegmt=True))]
        if self.h11.their_state is not h11.DONE:
            # What is left of the body cannot be told apart from the next request.
            fields.append(("Connection", "close"))
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=fields, reason=_reason(status)))
            if body and not head:
                data += self.h11.send(h11.Data(data=body))
            data += self.h11.send(h11.EndOfMessage())
            # Head and body in one write: with Nagle on, a second write would wait for a delayed ACK (~40 ms).
            self._write(data)
        except OSError:
            self.open = False

    def reset(self) -> None:
        self.open = False
        try:
            # Linger on with a zero timeout turns close() into an RST instead of a FIN.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def _next_event(self) -> object:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.sock.recv(_READ_SIZE)
            self.client_closed = not data
            self.h11.receive_data(data)

    def _write(self, data: bytes | None) -> None:
        if data:
            self.sock.sendall(data)

    def _refuse_request(self, error: h11.RemoteProtocolError) -> None:
        """A request we cannot even read: say so if the protocol still lets us, then close."""
        self.open = False
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = json.dumps({"detail": f"Bad request: {error}"}).encode()
        status = error.error_status_hint
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        with contextlib.suppress(OSError, h11.LocalProtocolError):
            response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
            parts = (response, h11.Data(data=body), h11.EndOfMessage())
            self._write(b"".join(self.h11.send(part) or b"" for part in parts))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class ThreadingServer(socketserver.ThreadingTCPServer):
    """Accepts connections and serves each on a thread of its own, handing every request to `handle`."""

    daemon_threads = True
    allow_reuse_address = True
    # Benchmarks open many connections at once; the default backlog of 5 would drop some of them.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[Exchange], None],
        track: Callable[[socket.socket, bool], None],
    ) -> None:
        self._handle = handle
        self._track = track
        super().__init__(address, socketserver.BaseRequestHandler)

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self._track(request, True)
        try:
            request.settimeout(IDLE_SECONDS)
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Connection(request, self.server_address[:2]).serve(self._handle)  # type: ignore[index]
        finally:
            self._track(request, False)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that go away mid-request (as our fault tests make them) are routine, not tracebacks on stderr.
        logger.debug("Connection from %s failed", client_address, exc_info=True)

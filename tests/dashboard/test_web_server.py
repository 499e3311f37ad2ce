"""The web server as `make run` starts it (`manage.py up`): clients that send their request body slowly
neither take the site down nor hold a connection forever."""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from dashboard.redis_server import free_port
from tests.conftest import start_web_server, stop_process
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SLOW_CLIENTS = 16  # more than the 2 processes × 4 threads the web server used to have
BODY_TIMEOUT_SECONDS = 8


def get(port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def web_server(redis_conn, tmp_path):
    """`manage.py up` on a free port, with no RQ worker: the web server and the scheduler, on the test database
    (and a metrics folder of its own: `up` empties it at start)."""
    port = free_port()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PIXELMILL_REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
        "PIXELMILL_LOG_LEVEL": "ERROR",
    }
    up = start_web_server(port, env)

    def answers() -> bool:
        try:
            return get(port, "/healthz", timeout=2) == 200
        except OSError:
            return False

    try:
        wait_until(answers, 60, 0.2, "the web server never answered /healthz")
        yield port
    finally:
        stop_process(up)


def csrf_cookie(port: int) -> str:
    """The CSRF cookie anyone gets with the login page: with it, Django reads the POST body to find the token."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/accounts/login/")
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie", "")
    finally:
        connection.close()
    return cookie.split(";", 1)[0]


class SlowClient:
    """POSTs the login form declaring a 100,000-byte body, then sends one byte of it at a time."""

    def __init__(self, port: int, cookie: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n"
            + f"Cookie: {cookie}\r\n\r\n".encode()
        )
        self.answer = b""
        self.closed_after: float | None = None

    def trickle(self, started: float) -> None:
        """Send one byte; note when the server answered or hung up instead."""
        if self.closed_after is not None:
            return
        try:
            self.sock.sendall(b"x")
            self.sock.setblocking(False)
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            finally:
                self.sock.setblocking(True)
        except OSError:
            data = b""
        self.answer += data
        self.closed_after = time.monotonic() - started


def test_slow_request_bodies_neither_starve_healthz_nor_stay_open(web_server):
    port = web_server
    cookie = csrf_cookie(port)
    assert cookie.startswith("csrftoken=")
    started = time.monotonic()
    clients = [SlowClient(port, cookie) for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):  # a byte a second: far below any real client, far above zero
            for client in clients:
                client.trickle(started)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1.0)  # every slow request is in the server, reading its body
        latencies = []
        while time.monotonic() - started < BODY_TIMEOUT_SECONDS - 1:
            before = time.monotonic()
            try:
                status = get(port, "/healthz", timeout=5)
            except OSError as error:
                status = repr(error)
            latencies.append(time.monotonic() - before)
            assert status == 200, f"/healthz answered {status} after {latencies[-1]:.1f} s"
            time.sleep(0.25)
        cut = wait_until(
            lambda: all(c.closed_after is not None for c in clients) and clients,
            BODY_TIMEOUT_SECONDS + 10,
            message=lambda: f"{sum(c.closed_after is None for c in clients)} slow clients still connected",
        )
    finally:
        stop.set()
        trickler.join()
        for client in clients:
            client.sock.close()

    closed_after = sorted(c.closed_after for c in cut)
    print(
        f"\n{SLOW_CLIENTS} slow clients (1 byte/s): /healthz {len(latencies)} times, median "
        f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; slow clients "
        f"answered after {closed_after[0]:.1f}–{closed_after[-1]:.1f} s"
    )
    assert max(latencies) < 2.0, "answered promptly (the threaded server timed out after 5 s)"
    assert all(c.answer.startswith(b"HTTP/1.1 408") for c in cut), {c.answer[:40] for c in cut}
    assert closed_after[-1] < BODY_TIMEOUT_SECONDS + 4

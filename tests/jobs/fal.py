"""Shared pieces of the generation tests: a fal provider on the simulator, fast polling, a webhook catcher."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.jobs.conftest import SIM_KEY_ENV


@pytest.fixture
def fast_generation(settings):
    """Poll every 10 ms for up to 5 s, retry in a blink; an attempt the client retries once inline."""
    settings.PIXELMILL_GENERATION_POLL_SECONDS = 0.01
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 5.0
    settings.PIXELMILL_GENERATION_RECHECK_SECONDS = 0.05
    settings.PIXELMILL_PROVIDER_BACKOFF_SECONDS = 0.01
    settings.PIXELMILL_FAL_WEBHOOK_BASE_URL = ""
    return settings


@pytest.fixture
def fal_provider(db, simulator, fast_generation):
    """A fal provider aimed at the simulator, whose requests finish within ~50 ms."""
    from dashboard.models import Provider

    simulator.configure(provider="fal", fal_queue_seconds=0.0, fal_run_seconds=0.05)
    return Provider.objects.create(
        name="fal (simulated)",
        slug="sim-fal",
        kind=Provider.Kind.FAL,
        base_url=simulator.url("fal"),
        api_key_env=SIM_KEY_ENV,
        requests_per_second=50.0,
        timeout_seconds=5.0,
        options={"model": "fal-ai/flux/schnell", "jwks_url": simulator.url("fal") + "/.well-known/jwks.json"},
    )


def submits(simulator, status: int | None = None) -> list[dict]:
    """The simulator's log of fal submissions (the calls fal charges for)."""
    return [
        entry
        for entry in simulator.log(kind="api")
        if entry["provider"] == "fal" and entry["endpoint"] == "submit" and status in (None, entry["status"])
    ]


class CatchingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.caught.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.arrived.set()  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def webhook_catcher():
    """A stand-in for our public URL: it keeps what fal (the simulator) POSTs, signature and all, for replay."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), CatchingHandler)
    server.caught, server.arrived = [], threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()

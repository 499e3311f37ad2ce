"""The web server's access log keeps share-link and webhook secrets out: a real gunicorn, a real request."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from dashboard.access_log import redact
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_secret_path_segments_are_redacted_and_the_rest_kept():
    assert redact("GET /share/abc.def:sig/download/ HTTP/1.1") == "GET /share/[redacted]/download/ HTTP/1.1"
    assert redact("/webhooks/fal/0123abcd/") == "/webhooks/fal/[redacted]/"
    assert redact("GET /campaigns/4/ HTTP/1.1") == "GET /campaigns/4/ HTTP/1.1"


def test_gunicorn_with_the_redacting_logger_never_writes_the_token(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "access.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--access-logfile", str(log), "--logger-class", "dashboard.access_log.RedactingLogger"],
        cwd=ROOT, env={**__import__("os").environ, "PIXELMILL_DATA_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def answers() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_until(answers, timeout=30, interval=0.2, message="gunicorn did not start")
        httpx.get(f"http://127.0.0.1:{port}/share/secret-token-123:sig/", timeout=5)
        wait_until(
            lambda: "/share/" in (log.read_text() if log.exists() else ""),
            timeout=10,
            interval=0.1,
            message="the request was never logged",
        )
    finally:
        server.terminate()
        server.wait(20)
    text = log.read_text()
    assert "/share/[redacted]/" in text and "secret-token-123" not in text

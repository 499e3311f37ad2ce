"""The web server's logs keep share-link and webhook secrets out: the server as `make run` configures it
(dashboard/gunicorn_config.py), real requests, its access log and the application's log read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from dashboard.redis_server import free_port
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_writes_neither_the_share_token_nor_the_webhook_secret(tmp_path):
    port = free_port()
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--config", "python:dashboard.gunicorn_config",
             "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT, env={**os.environ, "PIXELMILL_DATA_DIR": str(tmp_path), "PIXELMILL_LOG_LEVEL": "INFO"},
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def answers() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_until(answers, timeout=30, interval=0.2, message="gunicorn did not start")
        httpx.get(f"http://127.0.0.1:{port}/share/secret-token-123:sig/no-such-page", timeout=5)
        httpx.post(f"http://127.0.0.1:{port}/webhooks/fal/fal-secret-456/", content=b"{}", timeout=5)
        wait_until(
            lambda: output.read_text().count("/webhooks/fal/") >= 2,
            timeout=10,
            interval=0.1,
            message=lambda: f"the requests were never logged: {output.read_text()[-2000:]}",
        )
    finally:
        server.terminate()
        server.wait(20)
    text = output.read_text()
    assert "secret-token-123" not in text and "fal-secret-456" not in text
    # The access log line and Django's "Not Found" line, each with the path's shape kept.
    assert '"GET /share/[redacted]/no-such-page HTTP/1.1" 404' in text
    assert '"message": "Not Found: /share/[redacted]/no-such-page"' in text
    assert '"message": "Not Found: /webhooks/fal/[redacted]/"' in text

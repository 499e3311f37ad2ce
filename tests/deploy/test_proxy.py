"""deploy/nginx.conf in front of the real web server (`manage.py up`'s gunicorn): pages and /readyz pass through,
/readyz names Redis once its redis-server is stopped, and /metrics is never served by the proxy, token or not.
Needs nginx installed (`apt-get install nginx-light`); without it the test says so and skips."""

from __future__ import annotations

import http.client
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboard.redis_server import EmbeddedRedis, free_port
from tests.conftest import start_web_server, stop_process
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "proxy-test-token"


def fetch(port: int, path: str, **headers: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def answers(port: int, path: str) -> bool:
    try:
        return fetch(port, path)[0] == 200
    except OSError:
        return False


@pytest.fixture
def redis_server():
    server = EmbeddedRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def web_port(redis_server, tmp_path_factory):
    """The web server as `make run` starts it (no worker), on its own Redis so the test may stop that one, and
    its own metrics folder, which `up` empties at start."""
    port = free_port()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("web-metrics")),
        "REDIS_URL": redis_server.url,
        "PIXELMILL_METRICS_TOKEN": TOKEN,
        "PIXELMILL_BEHIND_PROXY": "true",
        "PIXELMILL_LOG_LEVEL": "ERROR",
    }
    up = start_web_server(port, env)
    try:
        wait_until(lambda: answers(port, "/healthz"), 60, 0.2, "the web server never answered /healthz")
        yield port
    finally:
        stop_process(up)


@pytest.fixture
def proxy_port(web_port, tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("PROXY NOT TESTED: nginx is not installed here (apt-get install nginx-light)")
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    # The compose names (web:8000, port 8080, /tmp) become this machine's loopback and a folder of the test's.
    conf = conf.replace("server web:8000;", f"server 127.0.0.1:{web_port};")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("/tmp/", f"{tmp_path}/")
    (tmp_path / "nginx.conf").write_text(conf)
    proxy = subprocess.Popen(
        [nginx, "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: answers(port, "/proxy-health"), 30, 0.1, "nginx never answered")
        yield port
    finally:
        stop_process(proxy)


def test_the_proxy_passes_pages_and_readiness_and_readyz_names_a_stopped_redis(proxy_port, redis_server):
    assert fetch(proxy_port, "/healthz") == (200, "ok\n")
    status, page = fetch(proxy_port, "/accounts/login/")
    assert status == 200 and "csrfmiddlewaretoken" in page
    assert fetch(proxy_port, "/readyz") == (200, "database: ok\nredis: ok\nstorage: ok\n")

    redis_server.stop()
    assert fetch(proxy_port, "/readyz") == (503, "database: ok\nredis: failed\nstorage: ok\n")
    assert fetch(proxy_port, "/healthz") == (200, "ok\n"), "liveness does not depend on Redis"


def test_metrics_are_served_to_the_token_on_the_web_port_never_through_the_proxy(proxy_port, web_port):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, text = fetch(web_port, "/metrics", **bearer)
    assert status == 200 and 'pixelmill_tasks{state="queued"}' in text
    assert fetch(web_port, "/metrics")[0] == 401
    assert fetch(proxy_port, "/metrics", **bearer)[0] == 404

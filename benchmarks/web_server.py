"""A real gunicorn for the benchmarks that measure the web process (dashboard_scale, upload_memory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """One gunicorn worker on a free loopback port: the production configuration unless `arguments` replaces
    it (dashboard_scale measures one sync worker, as it always has, so its figures stay comparable)."""

    def __init__(self, arguments: list[str] | None = None, client_timeout: float = 900) -> None:
        self.arguments = arguments or [
            "--config", "python:dashboard.gunicorn_config", "--access-logfile", "/dev/null"
        ]  # fmt: skip
        self.client_timeout = client_timeout

    def __enter__(self) -> Gunicorn:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", *self.arguments],
            cwd=ROOT, env=os.environ.copy(),
        )  # fmt: skip
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not come up")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def client(self, user):
        import httpx
        from django.test import Client

        session = Client()
        session.force_login(user)
        cookies = {"sessionid": session.cookies["sessionid"].value}
        return httpx.Client(base_url=self.url(""), cookies=cookies, timeout=self.client_timeout)

    @property
    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0])

    def reset_peak(self) -> int:
        """Reset the worker's VmHWM to its current size; returns that size in kB."""
        Path(f"/proc/{self.worker_pid}/clear_refs").write_text("5")
        return status_kb(self.worker_pid, "VmRSS")

    def peak_kb(self) -> int:
        return status_kb(self.worker_pid, "VmHWM")

    def cpu_seconds(self) -> float:
        """The worker's user + system CPU time so far."""
        fields = Path(f"/proc/{self.worker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def set_up_django(workdir: Path, redis_url: str, database_url: str | None = None) -> None:
    """Point Django at `database_url` (by default a throwaway SQLite database under `workdir`), a media folder
    under `workdir` and `redis_url`, set it up and migrate: what the web server and workers started afterwards
    inherit."""
    os.environ.update(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url or f"sqlite:///{workdir / 'db.sqlite3'}",
            "PIXELMILL_MEDIA_ROOT": str(workdir / "media"),
            "PIXELMILL_DATA_DIR": str(workdir),
            "PIXELMILL_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

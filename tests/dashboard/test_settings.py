"""Production settings: `manage.py check --deploy` reports nothing when PIXELMILL_SECURE is on."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "PIXELMILL_SECURE": "true",
        "PIXELMILL_SECRET_KEY": secrets.token_urlsafe(60),
        "PIXELMILL_ALLOWED_HOSTS": "pixelmill.example.com",
        "PIXELMILL_DATA_DIR": str(tmp_path),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_settings_are_what_check_deploy_warns_about(tmp_path):
    env = {**os.environ, "PIXELMILL_DATA_DIR": str(tmp_path)}
    env.pop("PIXELMILL_SECURE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "SESSION_COOKIE_SECURE" in result.stdout + result.stderr

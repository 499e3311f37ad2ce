"""Settings: production ones pass `check --deploy`, and a bad environment value is named at startup."""

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


def settings_error(tmp_path, **variables: str) -> str:
    """What loading the settings in a fresh process prints to stderr with these variables set."""
    env = {**os.environ, "PIXELMILL_DATA_DIR": str(tmp_path), **variables}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "dashboard.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, "settings with a bad value loaded without complaint"
    return result.stderr


def test_a_bad_number_fails_at_startup_naming_its_variable_and_value(tmp_path):
    stderr = settings_error(tmp_path, PIXELMILL_MAX_ATTEMPTS="abc")
    assert "ImproperlyConfigured" in stderr
    assert "PIXELMILL_MAX_ATTEMPTS='abc'" in stderr and "Not a valid integer" in stderr


def test_every_bad_variable_is_named_at_once(tmp_path):
    stderr = settings_error(
        tmp_path, PIXELMILL_RETRY_BASE_SECONDS="2s", PIXELMILL_SECURE="maybe", PIXELMILL_BACKOFF_JITTER="1.5"
    )
    assert "PIXELMILL_RETRY_BASE_SECONDS='2s'" in stderr
    assert "PIXELMILL_SECURE='maybe'" in stderr
    assert "PIXELMILL_BACKOFF_JITTER='1.5'" in stderr


def test_a_bad_database_url_is_named_without_its_password(tmp_path):
    stderr = settings_error(tmp_path, DATABASE_URL="nosuchdb://pixelmill:hunter2@db.internal/pixelmill")
    assert "DATABASE_URL='nosuchdb://pixelmill:***@db.internal/pixelmill'" in stderr
    assert "hunter2" not in stderr


def test_a_bad_login_cool_off_is_named_rather_than_crashing_the_settings(tmp_path):
    """The cool-off is turned into a timedelta in the settings themselves; a bad value must still be named."""
    stderr = settings_error(
        tmp_path, PIXELMILL_LOGIN_COOLOFF_MINUTES="15m", PIXELMILL_LOGIN_FAILURE_LIMIT="0"
    )
    assert "PIXELMILL_LOGIN_COOLOFF_MINUTES='15m'" in stderr and "Not a valid integer" in stderr
    assert "PIXELMILL_LOGIN_FAILURE_LIMIT='0'" in stderr
    assert "TypeError" not in stderr


def test_object_storage_needs_a_bucket_and_a_known_backend_each_named_at_startup(tmp_path):
    stderr = settings_error(tmp_path, PIXELMILL_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="")
    assert "AWS_STORAGE_BUCKET_NAME" in stderr
    stderr = settings_error(tmp_path, PIXELMILL_STORAGE="gcs", PIXELMILL_STORAGE_URL_SECONDS="5m")
    assert "PIXELMILL_STORAGE='gcs'" in stderr
    assert "PIXELMILL_STORAGE_URL_SECONDS='5m'" in stderr


def test_the_standard_aws_variables_choose_the_s3_backend(tmp_path):
    """Read in a fresh process, as a worker on another machine reads them; nothing is contacted at startup."""
    env = {
        **os.environ,
        "PIXELMILL_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "PIXELMILL_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": "pixelmill-media",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "key-id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_S3_REGION_NAME": "eu-west-1",
        "PIXELMILL_STORAGE_URL_SECONDS": "120",
    }
    script = (
        "import django; django.setup()\n"
        'from django.core.files.storage import storages; s = storages["default"]\n'
        "print(type(s).__name__, s.bucket_name, s.endpoint_url, s.access_key, s.region_name, "
        "s.querystring_expire, s.file_overwrite)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "S3MediaStorage", "pixelmill-media", "http://127.0.0.1:9", "key-id", "eu-west-1", "120", "True"
    ]  # fmt: skip
    assert not (tmp_path / "media").exists()

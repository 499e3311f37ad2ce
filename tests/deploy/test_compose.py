"""compose.yaml is a valid Compose file (the Compose Specification's JSON schema, vendored) and keeps our rules:
a health check on every long-running service, Redis with AOF, only the proxy published, state in named
volumes, one scheduler, and environment names that Pixelmill reads and the README documents. The nginx
config passes `nginx -t` and the file `docker compose config -q` where those tools are installed.

The schema is compose-spec/compose-spec's schema/compose-spec.json at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23), kept in tests/deploy/compose-spec.json: CI has no
network to fetch it, and no Docker Compose."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = Path(__file__).with_name("compose-spec.json")
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
APP_SERVICES = ("web", "worker", "scheduler", "setup")
# What an operator must provide (the `:?` variables), as a .env file would.
REQUIRED = {
    "PIXELMILL_SECRET_KEY": "a-long-random-key",
    "POSTGRES_PASSWORD": "db-password",
    "AWS_ACCESS_KEY_ID": "pixelmill",
    "AWS_SECRET_ACCESS_KEY": "s3-secret",
    "DJANGO_SUPERUSER_PASSWORD": "admin-password",
}
VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariableError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        unset = name not in env or (op is not None and op.startswith(":") and env[name] == "")
        if op and op.endswith("?") and unset:
            raise MissingVariableError(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return env.get(name, "")

    return VARIABLE.sub(substitute, value)


def as_compose_reads_it(text: str) -> Any:
    """compose.yaml with every ${…} resolved and integers where the schema wants them (compose casts)."""
    document = interpolate(yaml.safe_load(text), REQUIRED)
    for service in document["services"].values():
        deploy = service.get("deploy", {})
        if isinstance(deploy.get("replicas"), str):
            deploy["replicas"] = int(deploy["replicas"])
    return document


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return as_compose_reads_it(COMPOSE.read_text())


def one_shot(name: str, services: dict[str, Any]) -> bool:
    """Runs once and exits, and something waits for it to have succeeded."""
    return services[name].get("restart") == "no" and any(
        (other.get("depends_on") or {}).get(name, {}).get("condition") == "service_completed_successfully"
        for other in services.values()
    )


def test_compose_file_is_valid_against_the_compose_specification(compose):
    # The schema names draft-07 ("https://json-schema.org/draft-07/schema", without the "#" jsonschema looks for).
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda error: list(error.path)
    )
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file():
    schema = json.loads(SCHEMA.read_text())
    broken = as_compose_reads_it(COMPOSE.read_text())
    broken["services"]["web"]["healthcheck"]["interval"] = ["30s"]
    broken["services"]["redis"]["restrat"] = "always"
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


def test_compose_refuses_to_start_without_the_secrets(raw):
    for name in REQUIRED:
        env = {key: value for key, value in REQUIRED.items() if key != name}
        with pytest.raises(MissingVariableError, match=name):
            interpolate(raw, env)


def test_every_long_running_service_has_a_health_check_and_one_shots_are_awaited(compose):
    services = compose["services"]
    assert {"proxy", "web", "worker", "scheduler", "postgres", "redis", "minio"} <= set(services)
    for name, service in services.items():
        if one_shot(name, services):
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted when it exits"
    assert {name for name in services if one_shot(name, services)} == {"setup", "createbucket"}


def test_web_health_check_is_liveness_and_waits_on_ready_dependencies(compose):
    services = compose["services"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("web", "worker", "scheduler"):
        needs = services[name]["depends_on"]
        assert needs["setup"]["condition"] == "service_completed_successfully", name
        for backing in ("postgres", "redis", "minio"):
            assert needs[backing]["condition"] == "service_healthy", (name, backing)
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["setup"]["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis:/data" in redis["volumes"]


def test_only_the_proxy_is_published_and_web_only_exposed_inside(compose):
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["web"].get("expose") == ["8000"]
    assert services["proxy"]["ports"] == ["8080:8080"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    conf = NGINX_CONF.read_text()
    assert "server web:8000;" in conf and "listen 8080;" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf), "the proxy never serves /metrics"


def test_state_lives_in_named_volumes(compose):
    declared = set(compose["volumes"])
    used = {
        mount.split(":", 1)[0]
        for service in compose["services"].values()
        for mount in service.get("volumes", [])
        if not mount.startswith(("./", "/"))
    }
    assert used == declared == {"postgres", "redis", "minio", "metrics"}
    services = compose["services"]
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "minio:/data" in services["minio"]["volumes"]
    for name in APP_SERVICES:
        assert "metrics:/var/lib/pixelmill/prometheus" in services[name]["volumes"], name
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/var/lib/pixelmill/prometheus"


def test_exactly_one_scheduler_and_workers_scale_by_replicas(raw, compose):
    assert compose["services"]["scheduler"]["deploy"]["replicas"] == 1
    assert raw["services"]["worker"]["deploy"]["replicas"] == "${PIXELMILL_WORKER_REPLICAS:-2}"
    assert compose["services"]["worker"]["deploy"]["replicas"] == 2
    assert "rqworker" in compose["services"]["worker"]["command"]
    assert compose["services"]["scheduler"]["command"][-2:] == ["rqcron", "jobs.cron"]


def test_app_services_share_one_image_and_use_the_backing_services(compose):
    services = compose["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"pixelmill:local"} and services["web"]["build"] == "."
    env = services["web"]["environment"]
    assert env["DATABASE_URL"] == "postgres://pixelmill:db-password@postgres:5432/pixelmill"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["PIXELMILL_STORAGE"] == "s3" and env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["PIXELMILL_BEHIND_PROXY"] == "true"
    # minio's root user is the key Pixelmill signs with, and the bucket the one createbucket makes.
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    assert (
        services["createbucket"]["environment"]["AWS_STORAGE_BUCKET_NAME"] == env["AWS_STORAGE_BUCKET_NAME"]
    )


def test_every_environment_name_is_read_by_pixelmill_and_documented(compose):
    settings_source = (ROOT / "dashboard" / "settings.py").read_text()
    readme = (ROOT / "README.md").read_text()
    names = {name for service in APP_SERVICES for name in compose["services"][service]["environment"]}
    read_elsewhere = {"DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_EMAIL"}
    for name in sorted(names - read_elsewhere):
        assert f'"{name}"' in settings_source, (
            f"{name} is set in compose.yaml but dashboard/settings.py never reads it"
        )
    for name in sorted(names):
        assert f"`{name}`" in readme, f"{name} is set in compose.yaml but the README never mentions it"
    example = (ROOT / "deploy" / "env.example").read_text()
    for name in REQUIRED:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), f"deploy/env.example lacks {name}"


def test_nginx_accepts_the_proxy_config(tmp_path):
    nginx = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(path)), None
    )
    if nginx is None:
        pytest.skip("NGINX CONFIG NOT CHECKED: nginx is not installed here (apt-get install nginx-light)")
    # `web` resolves only on compose's network; nginx -t resolves upstream names, so point it at loopback.
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.read_text().replace("server web:8000;", "server 127.0.0.1:8000;"))
    result = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_accepts_the_file():
    command = compose_command()
    if command is None:
        pytest.skip(
            "DOCKER COMPOSE CHECK NOT RUN: neither `docker compose` nor `docker-compose` is installed here "
            "(the schema test above still checked the file)"
        )
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "--project-directory", str(ROOT), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **REQUIRED},
    )
    assert result.returncode == 0, result.stderr


def test_the_image_checks_liveness_and_keeps_metrics_where_compose_mounts_them(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :].split("\n# ", 1)[0]
    assert "http://127.0.0.1:8000/healthz" in healthcheck
    assert "PROMETHEUS_MULTIPROC_DIR=/var/lib/pixelmill/prometheus" in dockerfile
    assert compose["services"]["web"]["healthcheck"]["test"][-1] == healthcheck.split('"')[-2]

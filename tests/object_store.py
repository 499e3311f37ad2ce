"""A real S3-compatible server on loopback for the storage tests: moto's server mode, one per test session,
and a fresh private bucket per test that the app's storage (PIXELMILL_STORAGE=s3) is pointed at."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from dashboard.redis_server import free_port
from tests.polling import wait_until

ACCESS_KEY = "pixelmill-test"
SECRET_KEY = "pixelmill-test-secret"
REGION = "us-east-1"


class MotoServer:
    """`python -m moto.server` on a free 127.0.0.1 port: a real socket and the S3 wire protocol."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # one access-log line per request
            start_new_session=True,
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "moto's server exited at start"
            try:
                return httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=60, interval=0.2, message="moto's S3 server never answered")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


@dataclass
class Bucket:
    """One bucket on the server, and the settings and environment that point the app at it."""

    server: MotoServer
    name: str

    @classmethod
    def create(cls, server: MotoServer) -> Bucket:
        name = f"pixelmill-{uuid.uuid4().hex[:12]}"
        server.client().create_bucket(Bucket=name)
        return cls(server, name)

    @property
    def environment(self) -> dict[str, str]:
        """PIXELMILL_STORAGE=s3 with the standard AWS_* names, as an operator sets them for each process."""
        return {
            "PIXELMILL_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": self.server.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
        }

    def storages(self) -> dict[str, Any]:
        """settings.STORAGES as dashboard/settings.py builds it from `environment`, for override_settings."""
        from django.conf import settings

        options = {
            "bucket_name": self.name,
            "endpoint_url": self.server.endpoint_url,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "addressing_style": "auto",
            "signature_version": "s3v4",
            "file_overwrite": True,
            "default_acl": None,
            "querystring_expire": 300,
            "max_memory_size": 8 * 1024 * 1024,
        }
        return {
            **settings.STORAGES,
            "default": {"BACKEND": "dashboard.s3_storage.S3MediaStorage", "OPTIONS": options},
        }

    def objects(self) -> dict[str, int]:
        """Every key in the bucket with its size in bytes."""
        paginator = self.server.client().get_paginator("list_objects_v2")
        return {
            entry["Key"]: entry["Size"]
            for page in paginator.paginate(Bucket=self.name)
            for entry in page.get("Contents", [])
        }

    def read(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

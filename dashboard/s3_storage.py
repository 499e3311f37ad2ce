"""The S3-compatible backend (PIXELMILL_STORAGE=s3): django-storages' S3Storage, plus reading an object as a
stream and a presigned link for a download."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class ObjectStream:
    """An object's body, read from the network as it is asked for: never whole in memory, never on disk
    (S3Storage.open downloads the whole object before the first byte is read)."""

    def __init__(self, name: str, body: Any, size: int) -> None:
        self.name = name
        self.size = size
        self._body = body

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size if size >= 0 else None)

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3MediaStorage(S3Storage):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._per_thread: dict[int, Any] = {}
        self._per_thread_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_per_thread", None)
        state.pop("_per_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._per_thread = {}
        self._per_thread_lock = threading.Lock()

    @property
    def connection(self) -> Any:
        """One boto3 resource per OS thread. django-storages keeps one per `threading.local`, which under
        gunicorn's gevent workers is one per greenlet: every request built a new session and resource
        (70 to 140 ms measured here). Greenlets of one thread take turns; a worker's threads keep their own."""
        thread = threading.get_native_id()
        connection = self._per_thread.get(thread)
        if connection is None:
            with self._per_thread_lock:
                connection = self._per_thread.get(thread)
                if connection is None:
                    connection = self._per_thread[thread] = super().connection
        return connection

    def open_stream(self, name: str) -> ObjectStream:
        key = self._normalize_name(clean_name(name))
        try:
            answer = self.bucket.meta.client.get_object(Bucket=self.bucket_name, Key=key)
        except ClientError as error:
            if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from error
            raise
        return ObjectStream(name, answer["Body"], answer["ContentLength"])

    def download_url(self, name: str, *, filename: str | None, content_type: str) -> str:
        """A link that works for `querystring_expire` seconds (PIXELMILL_STORAGE_URL_SECONDS) and makes the
        browser save the file under `filename` (None: show it)."""
        parameters = {"ResponseContentType": content_type, "ResponseCacheControl": "private, no-store"}
        if filename is not None:
            parameters["ResponseContentDisposition"] = content_disposition_header(True, filename) or ""
        return self.url(name, parameters=parameters)

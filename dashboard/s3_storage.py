"""The S3-compatible backend (PIXELMILL_STORAGE=s3): django-storages' S3Storage, plus reading an object as a
stream and a presigned link for a download."""

from __future__ import annotations

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

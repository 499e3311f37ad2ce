"""Stored files beyond Django's Storage API: read a piece at a time, and handed to a browser through a
presigned link when the bucket can make one (README: Object storage)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.core.files.storage import default_storage


class StoredStream(Protocol):
    name: str | None
    size: int

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class BucketStorage(Protocol):
    """What an object store adds (dashboard.s3_storage.S3MediaStorage); local disk has neither."""

    def open_stream(self, name: str) -> StoredStream: ...

    def download_url(self, name: str, *, filename: str | None, content_type: str) -> str: ...


def open_stream(name: str) -> StoredStream:
    """A stored file opened to be read a piece at a time, with its `size`; FileNotFoundError when missing.
    Django's `open` would download a whole S3 object (to memory or a temporary file) before the first byte."""
    if isinstance(default_storage, BucketStorage):
        return default_storage.open_stream(name)
    return default_storage.open(name, "rb")


def read_bytes(name: str) -> bytes:
    """A stored file whole, as a worker decodes it: from a bucket in one request and one copy in memory
    (Django's `open` would spool it first, then `read` copy it)."""
    stream = open_stream(name)
    try:
        return stream.read()
    finally:
        stream.close()


def read_chunks(name: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    stream = open_stream(name)
    try:
        while chunk := stream.read(chunk_size):
            yield chunk
    finally:
        stream.close()


def download_url(name: str, *, filename: str | None, content_type: str) -> str | None:
    """A short-lived presigned link to the file when PIXELMILL_STORAGE_REDIRECT_DOWNLOADS is on and the
    storage is a bucket; None means: serve it from here. Only ever called after the view's team check."""
    if settings.PIXELMILL_STORAGE_REDIRECT_DOWNLOADS and isinstance(default_storage, BucketStorage):
        return default_storage.download_url(name, filename=filename, content_type=content_type)
    return None

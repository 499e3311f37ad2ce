"""The images the simulator hands out by URL (/files/<name>): the newest kept, the oldest dropped."""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from urllib.parse import urlsplit

from simulator.calls import Answer, Call, Refusal, json_answer

CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_FILE_NAME = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|webp)")


class FileStore:
    """Results and generated images in memory, served to anyone who has the URL, like a signed CDN link."""

    def __init__(self, kept: int) -> None:
        # How many files to keep; changing it takes effect at the next file stored.
        self.kept = kept
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    def store(self, base: str, data: bytes, extension: str) -> str:
        """Keep `data` and return the URL it is served at, below `base`."""
        name = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._files[name] = (data, CONTENT_TYPES[extension])
            while len(self._files) > self.kept:
                self._files.popitem(last=False)
        return f"{base}/files/{name}"

    def read_url(self, url: object, own_hosts: set[str]) -> bytes:
        """The bytes behind an image_url, which may only name one of our own files: no fetching from outside."""
        parts = urlsplit(url) if isinstance(url, str) else None
        name = parts.path.removeprefix("/files/") if parts else ""
        if (
            parts is None
            or parts.scheme != "http"
            or parts.netloc not in own_hosts
            or not _FILE_NAME.fullmatch(name)
        ):
            raise Refusal(
                400, "image_url must point at a file this simulator serves (/files/...).", "invalid_image_url"
            )
        with self._lock:
            stored = self._files.get(name)
        if stored is None:
            raise Refusal(400, "image_url names a file that does not exist (any more).", "invalid_image_url")
        return stored[0]

    def download(self, call: Call, segments: list[str]) -> Answer:
        name = segments[0] if len(segments) == 1 else ""
        with self._lock:
            stored = self._files.get(name) if call.method in ("GET", "HEAD") else None
        if stored is None:
            return json_answer(404, {"detail": "File not found"}, "not_found")
        data, content_type = stored
        return Answer(status=200, outcome="ok", body=data, content_type=content_type)

"""The simulator's request log: every exchange in memory, and as JSON lines in a file when asked."""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any


class RequestLog:
    """The newest `limit` entries in arrival order, each numbered by `next_seq()`."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._file: IO[str] | None = None
        self._seq = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry) + "\n")
                self._file.flush()

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        """A copy in arrival order; `kind` keeps only "api", "download", "control" or "webhook"."""
        with self._lock:
            entries = [dict(entry) for entry in self._entries if kind is None or entry["kind"] == kind]
        return sorted(entries, key=lambda entry: entry["seq"])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._seq = 0

    def resize(self, limit: int) -> None:
        with self._lock:
            self._entries = deque(self._entries, maxlen=limit)

    def open_file(self, path: str | None) -> None:
        """Append every later entry to `path` (closing the file before, if any); None stops writing."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by open_file(None)

"""Processes as /proc shows them, for the benchmarks that follow a worker and its work-horses."""

from __future__ import annotations

import contextlib
from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's), e.g. RQ's work-horses or a pool's processes."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found

"""What the simulator's request log proves about a client: calls in flight at once, Retry-After honoured."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def max_in_flight(entries: Iterable[Mapping[str, Any]], provider: str | None = None) -> int:
    """The most provider calls open at one instant: the peak number of overlapping [started, ended] intervals.

    Only "api" entries count (downloads, control calls and webhooks are not calls to a provider), and only
    `provider`'s when given. Intervals that merely touch (one ends when the next starts) do not overlap.
    """
    events: list[tuple[float, int]] = []
    for entry in entries:
        if entry.get("kind", "api") != "api" or (provider is not None and entry.get("provider") != provider):
            continue
        if entry.get("ended") is None:
            continue
        events.append((entry["started"], 1))
        events.append((entry["ended"], -1))
    # At equal times -1 sorts before +1, so touching intervals are never counted together.
    events.sort()
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def requests_before_deadline(
    entries: Iterable[Mapping[str, Any]], grace_seconds: float = 0.0
) -> list[dict[str, Any]]:
    """Calls that did not honour a Retry-After: made after a 429 reached the client, before its deadline.

    The rule, per provider: call C breaks 429 answer R when

        R.ended + grace_seconds < C.started < R.retry_deadline

    A call that started before R ended (plus `grace_seconds` for R's trip back to the client and the client's
    own bookkeeping) was already in flight, or sent, before the client could have read R, so it could not
    have known. Only "api" entries count. Each offending entry is returned once, ordered by `started`.
    """
    by_provider: dict[Any, list[Mapping[str, Any]]] = {}
    for entry in entries:
        if entry.get("kind", "api") == "api":
            by_provider.setdefault(entry.get("provider"), []).append(entry)
    offending: list[dict[str, Any]] = []
    for calls in by_provider.values():
        windows = sorted(
            (call["ended"] + grace_seconds, call["retry_deadline"])
            for call in calls
            if call.get("status") == 429
            and call.get("retry_deadline") is not None
            and call.get("ended") is not None
        )
        # Sweep: with every window that opened before t seen, t is inside one iff the latest deadline is after t.
        latest_deadline = -math.inf
        index = 0
        for call in sorted(calls, key=lambda c: c["started"]):
            started = call["started"]
            while index < len(windows) and windows[index][0] < started:
                latest_deadline = max(latest_deadline, windows[index][1])
                index += 1
            if started < latest_deadline:
                offending.append(dict(call))
    offending.sort(key=lambda c: c["started"])
    return offending


def token_bucket_refusals(times: Iterable[float], rate: float, burst: int = 1) -> int:
    """How many of these send times a provider's token bucket (`rate` per second, `burst` deep) would refuse.

    The bucket is judged as GCRA: a call at t conforms when t >= TAT - (burst - 1) / rate, and only a call
    that conforms moves TAT on (to max(t, TAT) + 1 / rate), as a refused call takes no token.
    """
    interval = 1 / rate
    tolerance = (burst - 1) * interval
    theoretical = -math.inf
    refused = 0
    for t in sorted(times):
        if t < theoretical - tolerance:
            refused += 1
        else:
            theoretical = max(t, theoretical) + interval
    return refused


def most_in_any_window(times: Iterable[float], seconds: float = 1.0) -> int:
    """The most send times in any half-open window [t, t + seconds): what a sliding-window limit counts."""
    ordered = sorted(times)
    most = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - seconds:
            start += 1
        most = max(most, end - start + 1)
    return most

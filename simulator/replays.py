"""Idempotency-Key replays: a repeated paid request gets the first one's answer instead of a second bill."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass

from simulator.calls import Answer, Refusal


@dataclass(frozen=True)
class ReplayKey:
    """One provider's Idempotency-Key, and what it was sent with (endpoint and input image hash)."""

    provider: str
    key: str
    request: tuple[str, str | None]


class Replays:
    """Answers to paid requests by Idempotency-Key, kept the way Stripe-style providers keep them.

    A request whose key already has a successful answer gets that answer again, unbilled; one arriving
    while the first with its key is still at work waits for it. Only successes are kept: a failed call was
    not billed, so sending it again is a new call.
    """

    def __init__(self, kept: int) -> None:
        # How many answers to keep; changing it takes effect at the next answer stored.
        self.kept = kept
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], tuple[tuple[str, str | None], Answer]] = OrderedDict()
        self._working: dict[tuple[str, str], threading.Event] = {}

    def claim(self, key: ReplayKey) -> Answer | None:
        """The stored answer to send again, or None: the caller does the work and then calls `finish`.

        Raises Refusal when the key was first used for another request (a client bug that would otherwise
        hand one image's result back for another).
        """
        slot = (key.provider, key.key)
        while True:
            with self._lock:
                stored = self._answers.get(slot)
                if stored is not None:
                    request, answer = stored
                    if request != key.request:
                        raise Refusal(
                            422,
                            "This Idempotency-Key was already used with a different request.",
                            "idempotency_key_reused",
                        )
                    return replayed(answer)
                working = self._working.get(slot)
                if working is None:
                    self._working[slot] = threading.Event()
                    return None
            working.wait()  # the first request ends, with an answer kept or not; then look again

    def finish(self, key: ReplayKey, answer: Answer | None) -> None:
        """Keep `answer` if it is a success (None: the work failed) and wake the requests waiting for it."""
        slot = (key.provider, key.key)
        with self._lock:
            if answer is not None and answer.status is not None and 200 <= answer.status < 300:
                self._answers[slot] = (key.request, dataclasses.replace(answer, headers=dict(answer.headers)))
                while len(self._answers) > self.kept:
                    self._answers.popitem(last=False)
            working = self._working.pop(slot, None)
        if working is not None:
            working.set()

    def clear(self) -> None:
        """Forget the kept answers; requests still at work finish as usual."""
        with self._lock:
            self._answers.clear()


def replayed(answer: Answer) -> Answer:
    """A copy of a kept answer, marked as a replay in its headers and in the request log."""
    return dataclasses.replace(
        answer, outcome="replayed", headers={**answer.headers, "Idempotent-Replayed": "true"}
    )

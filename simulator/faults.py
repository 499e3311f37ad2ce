"""Limits and injected faults: token buckets, calls in flight, credits, forced outcomes and seeded draws."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.config import FAULT_ORDER, PROVIDERS, SimulatorConfig


@dataclass
class TokenBucket:
    tokens: float
    at: float  # time.monotonic() of the last refill

    def refill(self, rate: float, burst: int, now: float) -> float:
        # Requests judged by their arrival may be judged a little out of order (each on its own thread): an
        # earlier one judged after a later one gets no refill, so the bucket is never more generous for it.
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.at) * rate)
        self.at = max(self.at, now)
        return self.tokens

    def take(self, rate: float, burst: int, now: float) -> float:
        """0.0 when a token was taken, otherwise the seconds until one is free."""
        if self.refill(rate, burst, now) >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


@dataclass
class ProviderState:
    bucket: TokenBucket
    in_flight: int = 0
    credits_left: int | None = None
    fail_next: deque[str] = field(default_factory=deque)


class Faults:
    """The runtime state behind limits and faults, per provider, returned to what the config says by reset()."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ProviderState] = {}
        self.reset(config)

    def reset(self, config: SimulatorConfig) -> None:
        """Fresh random draws, buckets, balances and forced outcomes; calls in flight stay counted."""
        with self._lock:
            self._faults_rng = random.Random(config.seed)
            # Jitter and fal seeds draw from their own generator, so changing latency leaves the fault sequence alone.
            self._other_rng = random.Random(config.seed + 1)
            self._injected_429s = 0
            self._fail_next: deque[str] = deque(config.fail_next)
            now = time.monotonic()
            previous = self._states
            self._states = {}
            for provider in PROVIDERS:
                settings = config.settings_for(provider)
                self._states[provider] = ProviderState(
                    bucket=TokenBucket(float(settings.burst), now),
                    # Calls still running stay counted: they will give their slot back when they end.
                    in_flight=previous[provider].in_flight if provider in previous else 0,
                    credits_left=settings.credits,
                    fail_next=deque(config.for_provider.get(provider, {}).get("fail_next", ())),
                )

    def apply(self, new: SimulatorConfig, provider: str | None, changed: set[str]) -> None:
        """Follow a change of settings: `credits` refills, `fail_next` re-arms, `rate_per_second` or `burst`
        refill the bucket and `seed` re-seeds, for `provider` or (None) for everyone."""
        with self._lock:
            if provider is None and "seed" in changed:
                self._faults_rng = random.Random(new.seed)
                self._other_rng = random.Random(new.seed + 1)
            if provider is None and "fail_next" in changed:
                self._fail_next = deque(new.fail_next)
            everyone = provider is None or "for_provider" in changed
            now = time.monotonic()
            for name in PROVIDERS if everyone else (provider,):
                state, settings = self._states[name], new.settings_for(name)  # type: ignore[index,arg-type]
                if changed & {"credits", "for_provider"}:
                    state.credits_left = settings.credits
                if changed & {"rate_per_second", "burst", "for_provider"}:
                    state.bucket = TokenBucket(float(settings.burst), now)
                if (provider is not None and "fail_next" in changed) or "for_provider" in changed:
                    state.fail_next = deque(new.for_provider.get(name, {}).get("fail_next", ()))

    def describe(self, config: SimulatorConfig) -> dict[str, Any]:
        """Credits left, queued outcomes, tokens and calls in flight, as /_sim/config shows them."""
        now = time.monotonic()
        with self._lock:
            providers = {}
            for name, state in self._states.items():
                settings = config.settings_for(name)
                tokens = None
                if settings.rate_per_second is not None:
                    tokens = round(state.bucket.refill(settings.rate_per_second, settings.burst, now), 3)
                providers[name] = {
                    "in_flight": state.in_flight,
                    "credits_left": state.credits_left,
                    "fail_next": list(state.fail_next),
                    "tokens": tokens,
                }
            return {"fail_next": list(self._fail_next), "providers": providers}

    def pop_forced(self, provider: str) -> str | None:
        """The next forced outcome: the provider's own queue first, then the global one."""
        with self._lock:
            queue = self._states[provider].fail_next or self._fail_next
            return queue.popleft() if queue else None

    def draw(self, settings: SimulatorConfig) -> str | None:
        """A random fault by the configured probabilities ("429", "reset", ...), or None for none."""
        with self._lock:
            draw = self._faults_rng.random()
        threshold = 0.0
        for name, kind in FAULT_ORDER:
            threshold += getattr(settings, name)
            if draw < threshold:
                return kind
        return None

    def admit(
        self, provider: str, settings: SimulatorConfig, arrived: float | None = None
    ) -> tuple[float, str] | None:
        """None when the call may run (it now counts as in flight), else (seconds to wait, outcome).

        The rate is judged at `arrived` (time.monotonic() when the request arrived; now if not given).
        """
        with self._lock:
            state = self._states[provider]
            if settings.concurrency is not None and state.in_flight >= settings.concurrency:
                return settings.retry_after_seconds, "concurrency_limited"
            if settings.rate_per_second is not None and (
                wait := state.bucket.take(
                    settings.rate_per_second, settings.burst, time.monotonic() if arrived is None else arrived
                )
            ):
                # Whole seconds, at least one: the earliest time asking again can succeed.
                return max(1, math.ceil(wait)), "rate_limited"
            state.in_flight += 1
            return None

    def release(self, provider: str) -> None:
        with self._lock:
            self._states[provider].in_flight -= 1

    def charge(self, provider: str) -> Literal["unlimited", "reserved", "exhausted"]:
        # A credit is reserved up front and refunded on failure, so parallel calls cannot overspend.
        with self._lock:
            state = self._states[provider]
            if state.credits_left is None:
                return "unlimited"
            if state.credits_left > 0:
                state.credits_left -= 1
                return "reserved"
            return "exhausted"

    def refund(self, provider: str) -> None:
        with self._lock:
            state = self._states[provider]
            if state.credits_left is not None:
                state.credits_left += 1

    def tokens(self, provider: str, settings: SimulatorConfig) -> float:
        """Tokens in the provider's bucket now (its rate must be set)."""
        assert settings.rate_per_second is not None
        with self._lock:
            bucket = self._states[provider].bucket
            return bucket.refill(settings.rate_per_second, settings.burst, time.monotonic())

    def jitter_ms(self, settings: SimulatorConfig) -> float:
        if not settings.jitter_ms:
            return 0.0
        with self._lock:
            return self._other_rng.uniform(0, settings.jitter_ms)

    def draw_seed(self) -> int:
        """A seed for a fal request that did not name one."""
        with self._lock:
            return self._other_rng.randrange(2**31)

    def next_injected_429_uses_date(self) -> bool:
        # Alternate exactly, so any run of injected 429s exercises both Retry-After forms.
        with self._lock:
            self._injected_429s += 1
            return self._injected_429s % 2 == 0

"""A circuit breaker per provider, shared by every worker through Redis.

It counts calls and failures (5xx, timeouts, resets) in fixed windows. When enough calls failed in the
current window, the circuit opens: nobody calls that provider until it closes again, and a recipe step
with a fallback provider uses that instead. Rate limits and refusals are not failures of the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis import Redis

# Atomic record-and-decide, so two workers cannot both see "one short of tripping".
RECORD = """
local calls = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[1] == '1' then
  failures = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if failures >= tonumber(ARGV[4]) and failures >= calls * tonumber(ARGV[5]) then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class BreakerPolicy:
    window_seconds: int = 30
    min_calls: int = 10
    failure_rate: float = 0.6
    open_seconds: float = 30.0


class CircuitBreaker:
    def __init__(self, connection: Redis, provider: str, policy: BreakerPolicy) -> None:
        self.connection = connection
        self.policy = policy
        self.prefix = f"pixelmill:breaker:{provider}"
        self._record = connection.register_script(RECORD)

    def open_for(self) -> float:
        """Seconds until the circuit closes; 0.0 when calls may go through."""
        # redis-py types its sync client's replies as "Awaitable | Any" (shared with the asyncio client).
        remaining = cast(int, self.connection.pttl(f"{self.prefix}:open"))
        return remaining / 1000 if remaining > 0 else 0.0

    def record(self, *, failed: bool, now: float) -> bool:
        """Count one finished call; True when this call opened the circuit."""
        window = int(now // self.policy.window_seconds)
        tripped = self._record(
            keys=[f"{self.prefix}:calls:{window}", f"{self.prefix}:failures:{window}", f"{self.prefix}:open"],
            args=[
                "1" if failed else "0",
                int(self.policy.open_seconds * 1000),
                self.policy.window_seconds * 2000,
                self.policy.min_calls,
                self.policy.failure_rate,
            ],
        )
        return bool(tripped)

    def reset(self) -> None:
        keys = list(self.connection.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.connection.delete(*keys)

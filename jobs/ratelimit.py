"""Per-provider limits shared by every worker through Redis: a send schedule that holds the request rate,
leased concurrency slots, and a cool-down that one 429 sets for everyone.

The rate is a GCRA schedule (the "virtual scheduling" form of a token bucket): each caller books the next
free send time and sleeps until it, so no capacity is lost to polling and waiters are served in order.
Time comes from Redis itself, so workers on different machines need no synchronised clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis import Redis

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# Book the next send time; refuse (without booking) when it is further away than the caller will wait.
# A cool-down in force pushes the booking past its end, so the sends after it are spread, not bunched.
RESERVE = (
    _NOW
    + """
local interval = 1000 / tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local max_wait = tonumber(ARGV[3])
local earliest = now + math.max(0, redis.call('PTTL', KEYS[1]))
local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), earliest)
local wait = math.max(tat - tolerance, earliest) - now
if wait > max_wait then return {0, tostring(wait)} end
redis.call('SET', KEYS[2], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
return {1, tostring(wait)}
"""
)

# Take a concurrency slot now: 0 granted, 1 a cool-down is in force, 2 every slot is taken.
TAKE_SLOT = (
    _NOW
    + """
local cooling = redis.call('PTTL', KEYS[2])
if cooling > 0 then return {1, cooling} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {2, math.max(1, math.min(tonumber(ARGV[4]), math.ceil(tonumber(first[2]) - now)))}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + 1000)
return {0, 0}
"""
)

# A cool-down only ever grows: a later, shorter Retry-After cannot cut an earlier one short.
COOL_DOWN = """
local wanted = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
end
return redis.call('PTTL', KEYS[1])
"""

# Re-date a lease (only if it is still held) by Redis's clock.
HOLD = (
    _NOW
    + """
return redis.call('ZADD', KEYS[1], 'XX', math.floor(now + tonumber(ARGV[2])), ARGV[1])
"""
)

GRANTED, COOLING, FULL = 0, 1, 2
# How long a caller waits before asking again for a slot when all are taken.
SLOT_POLL_MS = 20


@dataclass(frozen=True)
class ProviderLimits:
    requests_per_second: float
    concurrency: int
    burst: int = 1
    lease_seconds: float = 120.0


@dataclass(frozen=True)
class Reservation:
    granted: bool
    wait: float  # seconds until the booked send time, or until booking is worth trying again


class ProviderLimiter:
    """Shared limits for one provider; `holder` names the call that holds a concurrency slot."""

    def __init__(self, connection: Redis, provider: str, limits: ProviderLimits) -> None:
        self.connection = connection
        self.limits = limits
        prefix = f"pixelmill:limits:{provider}"
        self.schedule_key = f"{prefix}:schedule"
        self.leases_key = f"{prefix}:leases"
        self.cooldown_key = f"{prefix}:cooldown"
        self._reserve = connection.register_script(RESERVE)
        self._take_slot = connection.register_script(TAKE_SLOT)
        self._cool_down = connection.register_script(COOL_DOWN)
        self._hold = connection.register_script(HOLD)

    def reserve(self, max_wait: float) -> Reservation:
        """Book a send time at most `max_wait` seconds away; not granted (nothing booked) if none is."""
        granted, wait_ms = self._reserve(
            keys=[self.cooldown_key, self.schedule_key],
            args=[self.limits.requests_per_second, max(1, self.limits.burst), max(0.0, max_wait) * 1000],
        )
        return Reservation(granted=bool(granted), wait=max(0.0, float(wait_ms)) / 1000)

    def take_slot(self, holder: str) -> tuple[int, float]:
        """(GRANTED, 0.0), or (COOLING | FULL, seconds to wait before asking again)."""
        state, wait_ms = self._take_slot(
            keys=[self.leases_key, self.cooldown_key],
            args=[self.limits.concurrency, holder, int(self.limits.lease_seconds * 1000), SLOT_POLL_MS],
        )
        return int(state), int(wait_ms) / 1000

    def try_acquire(self, holder: str) -> float:
        """Send now if both the schedule and a slot allow it: 0.0 when granted, else seconds to wait."""
        reservation = self.reserve(0.0)
        if not reservation.granted:
            return max(reservation.wait, 0.001)
        state, wait = self.take_slot(holder)
        return 0.0 if state == GRANTED else wait

    def release(self, holder: str) -> None:
        self.connection.zrem(self.leases_key, holder)

    def hold(self, holder: str, seconds: float) -> None:
        """Keep a slot taken for `seconds` more: a request that timed out may still be running remotely."""
        self._hold(keys=[self.leases_key], args=[holder, int(seconds * 1000)])

    def cool_down(self, seconds: float) -> float:
        """Make every worker wait `seconds` (a 429's Retry-After); returns the cool-down now in force."""
        return int(self._cool_down(keys=[self.cooldown_key], args=[max(1, int(seconds * 1000))])) / 1000

    def cooling_for(self) -> float:
        # redis-py types its sync client's replies as "Awaitable | Any" (shared with the asyncio client).
        remaining = cast(int, self.connection.pttl(self.cooldown_key))
        return remaining / 1000 if remaining > 0 else 0.0

    def in_flight(self) -> int:
        return cast(int, self.connection.zcard(self.leases_key))

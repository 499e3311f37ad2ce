"""Per-provider limits shared by every worker through Redis: a token bucket, leased concurrency slots
and a cool-down that one 429 sets for everyone."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

# One script, so the check and the take are atomic across every worker. Time comes from Redis
# itself: workers on different machines do not need synchronised clocks.
ACQUIRE = """
redis.replicate_commands()
local bucket, leases, cooldown = KEYS[1], KEYS[2], KEYS[3]
local rate, burst, slots = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local holder, lease_ms = ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cooling = redis.call('PTTL', cooldown)
if cooling > 0 then return cooling end

redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
if redis.call('ZCARD', leases) >= slots then
  local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(first[2]) - now)
end

local state = redis.call('HMGET', bucket, 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
if tokens < 1 then
  return math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', bucket, 'tokens', tokens - 1, 'at', now)
redis.call('PEXPIRE', bucket, math.ceil(burst * 1000 / rate) + 1000)
redis.call('ZADD', leases, now + lease_ms, holder)
redis.call('PEXPIRE', leases, lease_ms + 1000)
return 0
"""

# A cool-down only ever grows: a later, shorter Retry-After cannot cut an earlier one short.
COOL_DOWN = """
local wanted = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < wanted then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
end
return redis.call('PTTL', KEYS[1])
"""

# Re-date a lease (only if it is still held) by Redis's clock, like ACQUIRE does.
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
"""


@dataclass(frozen=True)
class ProviderLimits:
    requests_per_second: float
    concurrency: int
    burst: int = 1
    lease_seconds: float = 120.0


class ProviderLimiter:
    """Shared limits for one provider; `holder` names the attempt that holds a concurrency slot."""

    def __init__(self, connection: Redis, provider: str, limits: ProviderLimits) -> None:
        self.connection = connection
        self.limits = limits
        prefix = f"pixelmill:limits:{provider}"
        self.keys = [f"{prefix}:bucket", f"{prefix}:leases", f"{prefix}:cooldown"]
        self._acquire = connection.register_script(ACQUIRE)
        self._cool_down = connection.register_script(COOL_DOWN)
        self._hold = connection.register_script(HOLD)

    def try_acquire(self, holder: str) -> float:
        """Take a token and a slot: 0.0 when granted, otherwise the seconds to wait before asking again."""
        waited_ms = self._acquire(
            keys=self.keys,
            args=[
                self.limits.requests_per_second,
                max(1, self.limits.burst),
                self.limits.concurrency,
                holder,
                int(self.limits.lease_seconds * 1000),
            ],
        )
        return int(waited_ms) / 1000

    def release(self, holder: str) -> None:
        self.connection.zrem(self.keys[1], holder)

    def cool_down(self, seconds: float) -> float:
        """Make every worker wait `seconds` (a 429's Retry-After); returns the cool-down now in force."""
        return int(self._cool_down(keys=[self.keys[2]], args=[max(1, int(seconds * 1000))])) / 1000

    def in_flight(self) -> int:
        return self.connection.zcard(self.keys[1])

    def hold(self, holder: str, seconds: float) -> None:
        """Keep a slot taken for `seconds` more: a request that timed out may still be running remotely."""
        self._hold(keys=[self.keys[1]], args=[holder, int(seconds * 1000)])

"""Per-provider limits shared by every worker through Redis: a send schedule that holds the request rate,
leased concurrency slots, and a cool-down that one 429 sets for everyone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from redis import Redis

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# Book a send time and a concurrency slot in one round trip: 0 booked ({0, wait, send_at}), 1 the send time
# is further away than the caller will wait (nothing booked), 2 every slot is taken. The rate is a GCRA
# schedule (the "virtual scheduling" form of a token bucket): each caller books the next free send time and
# sleeps until it, so waiters are served in order and no capacity is lost to polling. The slot is leased
# from the booking on, so nothing stands between waking up and sending but the confirmation below.
# A cool-down in force pushes the booking past its end, so the sends after it are spread, not bunched.
BOOK = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {2, tostring(math.max(1, math.min(tonumber(ARGV[7]), math.ceil(tonumber(first[2]) - now)))), '0'}
end
local interval = 1000 / tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local max_wait = tonumber(ARGV[3])
local earliest = now + math.max(0, redis.call('PTTL', KEYS[1]))
local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), earliest)
local send_at = math.max(tat - tolerance, earliest)
if send_at - now > max_wait then return {1, tostring(send_at - now), '0'} end
redis.call('SET', KEYS[2], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
local lease = tonumber(ARGV[6])
redis.call('ZADD', KEYS[3], send_at + lease, ARGV[5])
redis.call('PEXPIRE', KEYS[3], math.ceil(send_at - now + lease) + 1000)
return {0, tostring(send_at - now), tostring(send_at)}
"""
)

# Just before sending a booked call: 0 send now ({0, lateness}), 1 wait ({1, ms to go}), 2 a cool-down began
# meanwhile (the slot is given back: book again). Waking up is late by however long the machine takes to
# run the caller again, and a call sent late lands right before the next one's booked time: the provider
# would see two calls closer than its rate allows. So the sends themselves keep a schedule of their own
# (KEYS[3]): a call goes only once the one before it is an interval minus a tolerance behind; a late call
# delays the next by what the tolerance does not absorb, instead of crowding it or losing its slot.
CONFIRM = (
    _NOW
    + """
local send_at = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) > 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {2, '0'}
end
local interval = 1000 / tonumber(ARGV[3])
local sent = tonumber(redis.call('GET', KEYS[3]) or '0')
local go = math.max(send_at, sent - tonumber(ARGV[4]))
if now < go then return {1, tostring(go - now)} end
local next_sent = math.max(sent, now) + interval
redis.call('SET', KEYS[3], tostring(next_sent), 'PX', math.ceil(next_sent - now) + 1000)
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[5]), ARGV[1])
return {0, tostring(now - send_at)}
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

BOOKED, LATER, FULL = 0, 1, 2
SEND, EARLY, COOLING = 0, 1, 2
# How long a caller waits before asking again for a slot when all are taken.
SLOT_POLL_MS = 20
# The least send tolerance, whatever the rate: a round trip to Redis on a busy machine.
MIN_SEND_TOLERANCE = 0.005


@dataclass(frozen=True)
class ProviderLimits:
    requests_per_second: float
    concurrency: int
    burst: int = 1
    lease_seconds: float = 120.0

    @property
    def send_tolerance(self) -> float:
        """How much closer than the schedule two sends may be: the burst's own tolerance and half an interval
        more, which a provider's burst of one more absorbs with the other half left for the trip to it."""
        return max((max(1, self.burst) - 0.5) / self.requests_per_second, MIN_SEND_TOLERANCE)


@dataclass(frozen=True)
class Grant:
    """A call allowed to go now, holding a concurrency slot; times are Redis's clock, in seconds."""

    holder: str
    send_at: float  # the booked send time
    lateness: float  # how long after it the call was let go
    rebooked: int  # bookings given up first because a cool-down began


class LimitWaitError(Exception):
    """The shared limits allow no call within the wait the caller accepts; `wait` is worth waiting first."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"no call allowed within the accepted wait; next in {wait:.2f} s")
        self.wait = wait


class ProviderLimiter:
    """Shared limits for one provider; `holder` names the call that holds a concurrency slot."""

    def __init__(self, connection: Redis, provider: str, limits: ProviderLimits) -> None:
        self.connection = connection
        self.limits = limits
        prefix = f"pixelmill:limits:{provider}"
        self.schedule_key = f"{prefix}:schedule"
        self.leases_key = f"{prefix}:leases"
        self.cooldown_key = f"{prefix}:cooldown"
        self.sent_key = f"{prefix}:sent"
        self._book = connection.register_script(BOOK)
        self._confirm = connection.register_script(CONFIRM)
        self._cool_down = connection.register_script(COOL_DOWN)
        self._hold = connection.register_script(HOLD)

    def acquire(
        self,
        holder: str,
        max_wait: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Grant:
        """Book a send time and a slot, sleep until the time, confirm it and return: the caller sends at once.

        Raises LimitWaitError (nothing held) when that would take more than `max_wait` seconds in all.
        """
        started = clock()
        rebooked = 0
        while True:
            waited = clock() - started
            state, wait, send_at = self.book(holder, max_wait - waited)
            if state == LATER:
                raise LimitWaitError(wait)
            if state == FULL:
                if waited + wait > max_wait:
                    raise LimitWaitError(wait)
                sleep(wait)
                continue
            # Counted from the answer, so the local deadline is never before the booked time on Redis's clock.
            deadline = clock() + wait
            while True:
                remaining = deadline - clock()
                if remaining > 0:
                    sleep(remaining)
                outcome, value = self.confirm(holder, send_at)
                if outcome == SEND:
                    return Grant(holder=holder, send_at=send_at, lateness=value, rebooked=rebooked)
                if outcome == COOLING:
                    break  # the slot is given back: book again, after the cool-down
                deadline = clock() + value
            rebooked += 1

    def book(self, holder: str, max_wait: float) -> tuple[int, float, float]:
        """(BOOKED, seconds to the send time, send time), (LATER, seconds, 0.0) or (FULL, seconds to poll, 0.0)."""
        state, wait_ms, send_at_ms = self._book(
            keys=[self.cooldown_key, self.schedule_key, self.leases_key],
            args=[
                self.limits.requests_per_second,
                max(1, self.limits.burst),
                max(0.0, max_wait) * 1000,
                self.limits.concurrency,
                holder,
                int(self.limits.lease_seconds * 1000),
                SLOT_POLL_MS,
            ],
        )
        return int(state), max(0.0, float(wait_ms)) / 1000, float(send_at_ms) / 1000

    def confirm(self, holder: str, send_at: float) -> tuple[int, float]:
        """(SEND, lateness), (EARLY, seconds to go) or (COOLING, 0.0), which frees the slot."""
        outcome, value_ms = self._confirm(
            keys=[self.cooldown_key, self.leases_key, self.sent_key],
            args=[
                holder,
                send_at * 1000,
                self.limits.requests_per_second,
                self.limits.send_tolerance * 1000,
                int(self.limits.lease_seconds * 1000),
            ],
        )
        return int(outcome), float(value_ms) / 1000

    def try_acquire(self, holder: str) -> float:
        """Send now if both the schedule and a slot allow it: 0.0 when granted, else seconds to wait."""
        state, wait, send_at = self.book(holder, 0.0)
        if state != BOOKED:
            return max(wait, 0.001)
        outcome, value = self.confirm(holder, send_at)
        return 0.0 if outcome == SEND else max(value, 0.001)

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

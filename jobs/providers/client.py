"""One httpx client per provider, built when a task runs: auth, shared limits, retries, error mapping, logs.

Every request to a provider goes through `ProviderClient.send`, which

1. refuses while the provider's circuit is open (the caller may fall back to another provider);
2. books a send time and a concurrency slot on the limits every worker shares and sends right at that
   time, waiting inline only for short waits and otherwise handing the task back (`DeferredError`);
3. maps the answer to our errors: a 429 sets a cool-down for every worker until its Retry-After,
   5xx/timeouts/resets retry with exponential backoff and jitter, other 4xx fail permanently with the
   provider's own reason, 402 pauses the campaign;
4. writes one JSON log line per HTTP request.

A paid call carries an Idempotency-Key (its step-cache key), the same on every try and every attempt.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import certifi
from redis import Redis

from jobs.backoff import backoff_delay
from jobs.breaker import BreakerPolicy, CircuitBreaker
from jobs.errors import DeferredError, RateLimitedError, StepError, TransientError
from jobs.providers import ProviderConfig
from jobs.providers.error_mapping import raise_for_provider_status, transient_for_exception
from jobs.ratelimit import LimitWaitError, ProviderLimiter, ProviderLimits
from jobs.telemetry import CIRCUIT_OPENED, record_provider_call

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("pixelmill.providers")
USER_AGENT = "Pixelmill/1.0 (+https://github.com/pixelmill)"
# A result file is small next to this; anything larger is not an image we asked for.
MAX_RESPONSE_BYTES = 200 * 1024 * 1024


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one costs tens of milliseconds of CPU."""
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True)
class ClientPolicy:
    """How hard one call tries before the task-level retry takes over."""

    tries: int = 3
    max_inline_wait: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    # 429s are a signal to slow down, not a failure; they get their own, larger allowance.
    rate_limited_tries: int = 10
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    @classmethod
    def for_web_request(cls) -> ClientPolicy:
        """For calls made while a person (or fal) waits on a web request: one try, no long inline waits."""
        return dataclasses.replace(cls.from_settings(), tries=1, max_inline_wait=2.0)

    @classmethod
    def from_settings(cls) -> ClientPolicy:
        from django.conf import settings

        return cls(
            tries=settings.PIXELMILL_PROVIDER_TRIES,
            max_inline_wait=settings.PIXELMILL_PROVIDER_MAX_INLINE_WAIT,
            backoff_base=settings.PIXELMILL_PROVIDER_BACKOFF_SECONDS,
            backoff_cap=settings.PIXELMILL_PROVIDER_BACKOFF_MAX_SECONDS,
            backoff_factor=settings.PIXELMILL_BACKOFF_FACTOR,
            backoff_jitter=settings.PIXELMILL_BACKOFF_JITTER,
            breaker=BreakerPolicy(
                window_seconds=settings.PIXELMILL_BREAKER_WINDOW_SECONDS,
                min_calls=settings.PIXELMILL_BREAKER_MIN_CALLS,
                failure_rate=settings.PIXELMILL_BREAKER_FAILURE_RATE,
                open_seconds=settings.PIXELMILL_BREAKER_OPEN_SECONDS,
            ),
        )


class ProviderClient:
    def __init__(
        self,
        config: ProviderConfig,
        *,
        connection: Redis,
        policy: ClientPolicy | None = None,
        log_context: Mapping[str, Any] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # httpx (with its asyncio and TLS stack) is imported by the first provider call, not by every worker.
        import httpx

        self.config = config
        self.policy = policy or ClientPolicy()
        self.log_context = dict(log_context or {})
        self.sleep = sleep
        self.http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(10.0, config.timeout_seconds)),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            verify=tls_context(),
            transport=transport,
        )
        self.limiter = ProviderLimiter(
            connection,
            config.slug,
            ProviderLimits(
                requests_per_second=config.requests_per_second,
                concurrency=config.concurrency,
                # A dead worker's slot frees itself once the longest request it could have made is over.
                lease_seconds=config.timeout_seconds * 2 + 10,
            ),
        )
        self.breaker = CircuitBreaker(connection, config.slug, self.policy.breaker)

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def name(self) -> str:
        return self.config.name

    def circuit_open_for(self) -> float:
        return self.breaker.open_for()

    def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        limited: bool = True,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical call, retried inline while that is cheap; returns a successful, fully read response.

        `idempotency_key` goes out as the Idempotency-Key header on every try, so a provider that finished
        a request we stopped waiting for answers the repeat from its record instead of billing it again.
        """
        import httpx

        if idempotency_key is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Idempotency-Key": idempotency_key}
        failures = rate_limited = 0
        while True:
            open_for = self.breaker.open_for()
            if open_for:
                raise DeferredError(
                    f"{self.name} keeps failing, so calls to it pause for {open_for:.0f} s (circuit open).",
                    retry_after=open_for,
                    code="circuit_open",
                )
            holder = self._acquire() if limited else None
            started = time.perf_counter()
            response: httpx.Response | None = None
            try:
                response = self.http.request(method, url, **kwargs)
                if len(response.content) > MAX_RESPONSE_BYTES:
                    raise TransientError(f"{self.name} sent an answer over the size limit.", code="too_large")
                raise_for_provider_status(response, self.name)
            except httpx.HTTPError as exc:
                if holder and isinstance(exc, httpx.TimeoutException):
                    # The provider may still be working on it: keep its slot taken for a while.
                    self.limiter.hold(holder, self.config.timeout_seconds)
                    holder = None
                error: StepError = transient_for_exception(exc, self.name)
            except StepError as exc:
                error = exc
            else:
                self._finish(holder, endpoint, started, response, outcome="ok")
                self.breaker.record(failed=False, now=time.time())
                return response
            error.provider = self.config.slug

            if isinstance(error, RateLimitedError):
                rate_limited += 1
                in_force = self.limiter.cool_down(error.retry_after)
                self._finish(holder, endpoint, started, response, outcome="rate_limited", retry_in=in_force)
                if rate_limited >= self.policy.rate_limited_tries or in_force > self.policy.max_inline_wait:
                    raise error
                continue  # the next _acquire waits for the shared cool-down
            if isinstance(error, TransientError):
                failures += 1
                if self.breaker.record(failed=True, now=time.time()):
                    logger.warning("circuit opened", extra={"provider": self.config.slug})
                    CIRCUIT_OPENED.labels(provider=self.config.slug).inc()
                delay = self._backoff_delay(failures) if failures < self.policy.tries else None
                self._finish(holder, endpoint, started, response, outcome=error.code, retry_in=delay)
                if delay is None:
                    raise error
                self.sleep(delay)
                continue
            self._finish(holder, endpoint, started, response, outcome=error.code)
            raise error

    def download(self, url: str, *, endpoint: str = "download") -> httpx.Response:
        """A result file the provider points us to (a CDN URL): retried like a call, not rate limited."""
        return self.send("GET", url, endpoint=endpoint, limited=False)

    def _acquire(self) -> str:
        """Book a send time and a concurrency slot on the shared limits, sleep until the time, and return
        the slot's holder: the request goes out at once. Waits inline while that stays under
        `max_inline_wait`; beyond it the task is handed back."""
        holder = f"{self.log_context.get('job_id', 'call')}:{uuid.uuid4().hex[:12]}"
        try:
            self.limiter.acquire(holder, self.policy.max_inline_wait, sleep=self.sleep)
        except LimitWaitError as wait:
            raise self._deferral(wait.wait) from None
        return holder

    def _deferral(self, wait: float) -> DeferredError:
        cooling = self.limiter.cooling_for()
        reason = "a Retry-After it sent" if cooling else "its shared rate and concurrency limits"
        return DeferredError(
            f"Waiting for {self.name} ({reason}): about {max(wait, cooling):.0f} s.",
            retry_after=max(wait, cooling, 0.5),
            code="rate_limit_wait",
        )

    def _backoff_delay(self, failures: int) -> float:
        return backoff_delay(
            failures,
            base=self.policy.backoff_base,
            cap=self.policy.backoff_cap,
            factor=self.policy.backoff_factor,
            jitter=self.policy.backoff_jitter,
        )

    def _finish(
        self,
        holder: str | None,
        endpoint: str,
        started: float,
        response: httpx.Response | None,
        *,
        outcome: str,
        retry_in: float | None = None,
    ) -> None:
        if holder:
            self.limiter.release(holder)
        record_provider_call(self.config.slug, outcome)
        logger.info(
            "provider call",
            extra={
                **self.log_context,
                "provider": self.config.slug,
                "endpoint": endpoint,
                "http_status": response.status_code if response is not None else None,
                "outcome": outcome,
                "execution_time_ms": round((time.perf_counter() - started) * 1000, 1),
                "retry_in": round(retry_in, 2) if retry_in is not None else None,
            },
        )

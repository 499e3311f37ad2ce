"""The attempt machinery shared by every kind of work a worker runs: tasks, generations and URL imports."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from jobs.queueing import JobKind

if TYPE_CHECKING:
    from jobs.errors import StepError


def lease_expiry() -> datetime:
    """When a running attempt is taken back unless its worker renews the lease first."""
    return timezone.now() + timedelta(seconds=settings.PIXELMILL_TASK_LEASE_SECONDS)


@dataclass(frozen=True)
class AttemptLog:
    """How the line that ends an attempt reads: its logger, its message, and the key naming the row."""

    logger: str
    message: str
    key: str


_Attempt = TypeVar("_Attempt", bound="AttemptModel")


class AttemptQuerySet(models.QuerySet[_Attempt]):
    def running_attempt(self, pk: int, attempt: int) -> Self:
        """The row only while `attempt` is the one running: updates through it cannot clobber a newer one."""
        return self.filter(pk=pk, state=self.model.State.RUNNING, attempts=attempt)

    def failed(self) -> Self:
        """Rows that stopped without succeeding and wait for a person: failed or dead."""
        return self.filter(state__in=[self.model.State.FAILED, self.model.State.DEAD])

    def unfinished(self) -> Self:
        return self.exclude(state__in=self.model.TERMINAL_STATES)

    def lease_expired(self, now: datetime) -> Self:
        """Running rows whose worker stopped renewing the lease: it died, or lost its database."""
        return self.filter(state=self.model.State.RUNNING, lease_expires_at__lt=now)

    def waiting_since(self, moment: datetime) -> Self:
        """Queued rows that were due before `moment` (queued then, and not scheduled for later)."""
        return self.filter(state=self.model.State.QUEUED, queued_at__lt=moment).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=moment)
        )


class AttemptModel(models.Model):
    """A row of work with numbered attempts: the row is the source of truth and Redis only transport.

    Every change of state is one conditional UPDATE on (state, attempt number): a duplicate or late
    delivery of a job, or a worker whose attempt was taken back, changes nothing. A concrete model
    declares `state` with a `State` holding at least queued, running, succeeded, failed and dead,
    `TERMINAL_STATES`, `job_kind` (how its jobs are named and run) and `attempt_log`.
    """

    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts started so far.")
    deferrals = models.PositiveSmallIntegerField(
        default=0, help_text="Attempts handed back unrun (rate limits, a paused campaign); not failures."
    )
    max_attempts = models.PositiveSmallIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    State: ClassVar[Any]
    TERMINAL_STATES: ClassVar[tuple[str, ...]]
    job_kind: ClassVar[JobKind]
    attempt_log: ClassVar[AttemptLog]
    # Whether log lines name the provider and its HTTP status (work that calls AI providers does).
    calls_providers: ClassVar[bool] = False

    objects = AttemptQuerySet.as_manager()

    class Meta:
        abstract = True

    @classmethod
    def claim(cls, pk: int, attempt: int, **changes: Any) -> bool:
        """Start `attempt` if nobody has: the conditional UPDATE makes a duplicate delivery a no-op."""
        # Each concrete model declares `state`; the plugin resolves lookups on the abstract one.
        claimed = cls.objects.filter(pk=pk, state=cls.State.QUEUED, attempts=attempt - 1).update(  # type: ignore[misc]
            state=cls.State.RUNNING, attempts=attempt, lease_expires_at=lease_expiry(), **changes
        )
        return claimed == 1

    def running_attempt(self, attempt: int) -> AttemptQuerySet[Any]:
        """This row, only while `attempt` is the one running."""
        return type(self).objects.running_attempt(self.pk, attempt)

    def heartbeat(self, attempt: int) -> bool:
        """Renew the lease of a running attempt; False once it ended or was taken back."""
        return bool(self.running_attempt(attempt).update(lease_expires_at=lease_expiry()))

    def mark_succeeded(self, attempt: int, **changes: Any) -> bool:
        """running → succeeded, the last error cleared; False when the attempt is no longer the running one."""
        return self._end(attempt, self.State.SUCCEEDED, error_code="", error_message="", **changes)

    def mark_failed(
        self, attempt: int, *, code: str, message: str, permanent: bool = True, **changes: Any
    ) -> bool:
        """End the row on a failed attempt: `failed` when retrying cannot help (permanent), else `dead` (the
        tries ran out); a person may requeue either."""
        state = self.State.FAILED if permanent else self.State.DEAD
        return self._end(attempt, state, error_code=code[:40], error_message=message, **changes)

    def _end(self, attempt: int, state: str, **changes: Any) -> bool:
        return bool(
            self.running_attempt(attempt).update(
                state=state,
                finished_at=timezone.now(),
                lease_expires_at=None,
                next_attempt_at=None,
                **changes,
            )
        )

    def requeue(
        self,
        attempt: int,
        *,
        at: datetime,
        count_as_failure: bool = True,
        code: str | None = None,
        message: str | None = None,
        **changes: Any,
    ) -> bool:
        """running → queued, due at `at`; the last error stays visible while it waits.

        A wait handed back unrun (a rate limit, a provider still busy) is not counted as a failure but as
        a deferral. Scheduling the next attempt's job is the caller's, after the commit.
        """
        if code is not None:
            changes["error_code"] = code[:40]
        if message is not None:
            changes["error_message"] = message
        if not count_as_failure:
            changes["deferrals"] = F("deferrals") + 1
        return bool(
            self.running_attempt(attempt).update(
                state=self.State.QUEUED,
                queued_at=timezone.now(),
                next_attempt_at=at,
                lease_expires_at=None,
                **changes,
            )
        )

    def log_context(self) -> dict[str, Any]:
        """What a log line says about this kind of row besides its id, e.g. its campaign."""
        return {}

    def log_attempt(
        self,
        attempt: int,
        *,
        outcome: str,
        started: float,
        error: StepError | None = None,
        retry_in: float | None = None,
        provider: str | None = None,
        **fields: Any,
    ) -> None:
        """The one line each attempt ends with: its outcome, how long it took, and what went wrong."""
        extra: dict[str, Any] = {
            self.attempt_log.key: self.pk,
            "job_id": self.job_kind.job_id(self.pk, attempt),
            **self.log_context(),
            **fields,
            "outcome": outcome,
            "execution_time_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        if self.calls_providers:
            extra["provider"] = error.provider if error else provider
            extra["http_status"] = error.http_status if error else None
        extra["error_code"] = error.code if error else None
        extra["retry_in"] = round(retry_in, 2) if retry_in is not None else None
        extra["error_ref"] = error.ref if error else None
        logging.getLogger(self.attempt_log.logger).info(self.attempt_log.message, extra=extra)

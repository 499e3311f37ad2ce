"""Tasks: one source image × one recipe version, where its processing stands, and a run's progress."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection, models
from django.db.models import Count, F, Q
from django.utils import timezone

from dashboard.models.attempts import AttemptLog, AttemptModel, AttemptQuerySet
from dashboard.models.intake import SourceImage
from dashboard.models.outputs import Output
from dashboard.models.recipes import RecipeVersion
from jobs.operations import KEPT_WHOLE, NOT_MADE, Operation, note_messages
from jobs.queueing import TASKS

if TYPE_CHECKING:
    from dashboard.causes import CauseGroup
    from dashboard.models.campaigns import Campaign


class TaskQuerySet(AttemptQuerySet["Task"]):
    def insert_queued(
        self,
        campaign: Campaign,
        sources: models.QuerySet[SourceImage],
        version: RecipeVersion,
        *,
        max_attempts: int,
        run_number: int,
    ) -> list[int]:
        """Queued tasks of run `run_number` for `sources` (SourceImage rows) on `version` that have none yet,
        in one INSERT … SELECT … RETURNING; their primary keys.

        bulk_create spent 1.3 s of Python on 10,000 rows (preparing every field of every row); here each
        column's value is prepared once and the database copies it, so only the source id varies.
        """
        now = timezone.now()
        given = {
            "campaign": campaign.pk,
            "recipe_version": version.pk,
            "state": Task.State.QUEUED,
            "max_attempts": max_attempts,
            "run_number": run_number,
            "created_at": now,
            "queued_at": now,
        }

        def quote(name: str | None) -> str:
            # Every name here is a table's or a concrete field's column; django-stubs types `column` as
            # optional for the fields that have none (many-to-many).
            assert name is not None
            return connection.ops.quote_name(name)

        source_pk = f"s.{quote(SourceImage._meta.pk.column)}"
        columns, values, params = [], [], []
        for field in Task._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(quote(field.column))
            if field.name == "source":
                values.append(source_pk)  # the one value per row
                continue
            value = given[field.name] if field.name in given else field.get_default()
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
        chosen, chosen_params = sources.order_by().values("pk").query.sql_with_params()
        task, source = quote(Task._meta.db_table), quote(SourceImage._meta.db_table)
        source_fk = quote(Task._meta.get_field("source").column)
        version_fk = quote(Task._meta.get_field("recipe_version").column)
        sql = (
            f"INSERT INTO {task} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM {source} s WHERE {source_pk} IN ({chosen}) "
            f"AND NOT EXISTS (SELECT 1 FROM {task} t WHERE t.{source_fk} = {source_pk} AND t.{version_fk} = %s) "
            f"ORDER BY {source_pk} RETURNING {quote(Task._meta.pk.column)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *chosen_params, version.pk])
            return sorted(pk for (pk,) in cursor.fetchall())

    def for_campaign(self, campaign: Campaign) -> TaskQuerySet:
        return self.filter(campaign=campaign)

    def with_cause(self, slug: str) -> TaskQuerySet:
        """Tasks whose error has this cause (dashboard.causes); an unknown cause matches nothing."""
        from dashboard.causes import BY_SLUG, OTHER, other_q

        cause = BY_SLUG.get(slug)
        if cause is None:
            return self.none()
        return self.filter(other_q() if cause is OTHER else cause.q())

    def causes(self) -> list[CauseGroup]:
        """These tasks' errors grouped into causes with counts, from one GROUP BY on the error code."""
        from dashboard.causes import group_by_cause

        return group_by_cause(self.order_by().values_list("error_code").annotate(n=Count("*")))


class Task(AttemptModel):
    """One source image × one recipe version, and where its processing stands."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        PAUSED = "paused", "Paused"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.DEAD)
    UNFINISHED_STATES = (State.PENDING, State.QUEUED, State.PAUSED, State.RUNNING)
    job_kind = TASKS
    attempt_log = AttemptLog("pixelmill.tasks", "attempt finished", "task")
    calls_providers = True

    # No index of their own: the indexes below lead with each of them (campaign; source in the unique
    # constraint; recipe_version in task_version_campaign). Every index costs each of a Process's 100,000
    # inserts, and PostgreSQL's planner preferred the bare campaign index, reading all of a campaign's tasks
    # to count a few of them.
    campaign = models.ForeignKey("Campaign", on_delete=models.CASCADE, related_name="tasks", db_index=False)
    source = models.ForeignKey(SourceImage, on_delete=models.CASCADE, related_name="tasks", db_index=False)
    recipe_version = models.ForeignKey(
        RecipeVersion, on_delete=models.PROTECT, related_name="tasks", db_index=False
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    run_number = models.PositiveIntegerField(
        default=0,
        help_text="The campaign's run this task is part of: the one going on when it was last queued by a person.",
    )
    worker_name = models.CharField(max_length=200, blank=True)
    error_step = models.CharField(max_length=40, blank=True)
    error_detail = models.TextField(
        blank=True, help_text="For staff: the type, message and traceback of a bug, under its error ref."
    )
    timings = models.JSONField(default=dict, blank=True)
    duration_ms = models.FloatField(
        null=True,
        blank=True,
        help_text="timings['total'] of the succeeded attempt, a column so charts aggregate it.",
    )
    provider_calls = models.JSONField(
        default=list, blank=True, help_text="One entry per remote step: provider, request id, cached or not."
    )
    provider_overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text='Chosen at requeue: {"remove_background": "photoroom"} runs that step there; null runs it locally.',
    )
    preview = models.FileField(max_length=300, blank=True)
    notes = models.JSONField(
        default=list,
        blank=True,
        help_text='Left by the steps of the succeeded attempt: {"code": "kept_whole", "message": why}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)

    # Managers are ClassVars to django-stubs, and as_manager()'s class has no name to annotate with
    # (typeddjango/django-stubs#1713).
    objects = TaskQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "recipe_version"], name="unique_task_per_source_version"
            )
        ]
        permissions = [("view_queues", "Can see the RQ queue and worker pages")]
        indexes = [
            # error_code too: the failures page groups a campaign's failed tasks by it from the index.
            models.Index(fields=["campaign", "state", "error_code"], name="task_campaign_state"),
            models.Index(fields=["state", "lease_expires_at"]),
            # Covers Progress's "finished in the last five minutes, since when" of the current run without a
            # table lookup per row: at 100,000 tasks that query alone took 130 ms.
            models.Index(
                fields=["campaign", "finished_at", "started_at", "run_number"], name="task_campaign_finished"
            ),
            # The current run's counts per state, for the progress panel.
            models.Index(fields=["campaign", "run_number", "state"], name="task_campaign_run"),
            # The failures page: a campaign's failed tasks in order, a page at a time.
            models.Index(
                fields=["campaign", "id"], condition=Q(state__in=["failed", "dead"]), name="task_failed"
            ),
            # The progress panel's "retrying": few rows, where PostgreSQL read the campaign's every task
            # (23 ms at 100,000) for lack of an index holding attempts and the error.
            models.Index(
                fields=["campaign", "run_number"],
                condition=Q(state="queued", attempts__gt=0) & ~Q(error_message=""),
                name="task_retrying",
            ),
            # Recent succeeded tasks: the measured task time of estimates, system-wide charts.
            models.Index(fields=["state", "finished_at"]),
            # "Which images already have this version": the estimate and Process count it per version.
            models.Index(fields=["recipe_version", "campaign"], name="task_version_campaign"),
        ]

    def __str__(self) -> str:
        return f"Task {self.pk} ({self.state})"

    def build_steps(self) -> list[Operation]:
        return self.recipe_version.build_steps(self.provider_overrides)

    def kept_whole_reason(self) -> str:
        """Why background removal kept the photo whole instead (the refusal it met); "" if it did not."""
        return next(iter(note_messages(self.notes, KEPT_WHOLE)), "")

    def not_made_reasons(self) -> list[str]:
        """Why each output of the recipe the photo was too small for was not made; empty if all were."""
        return note_messages(self.notes, NOT_MADE)

    def uses_providers(self) -> bool:
        return self.recipe_version.uses_providers(self.provider_overrides)

    def log_context(self) -> dict[str, Any]:
        return {"image": self.source_id}

    @classmethod
    def claim(cls, pk: int, attempt: int, worker_name: str = "", **changes: Any) -> bool:
        """Start `attempt` if nobody has, noting the worker that runs it."""
        return super().claim(pk, attempt, started_at=timezone.now(), worker_name=worker_name[:200], **changes)

    def mark_succeeded(
        self, attempt: int, *, timings: dict[str, float] | None = None, **changes: Any
    ) -> bool:
        timings = timings or {}
        return super().mark_succeeded(
            attempt,
            error_step="",
            error_detail="",
            timings=timings,
            duration_ms=timings.get("total"),
            **changes,
        )

    def mark_failed(
        self,
        attempt: int,
        *,
        code: str,
        message: str,
        permanent: bool = True,
        step: str = "",
        detail: str = "",
        **changes: Any,
    ) -> bool:
        """Record a failed attempt with the step it failed in and, for a bug, the traceback staff see."""
        return super().mark_failed(
            attempt,
            code=code,
            message=message,
            permanent=permanent,
            error_step=step[:40],
            error_detail=detail,
            **changes,
        )

    @property
    def failed_attempts(self) -> int:
        return self.attempts - self.deferrals

    def review_counts(self) -> dict[str, int]:
        """Outputs per review decision; reads prefetched outputs when the gallery prefetched them."""
        counts = dict.fromkeys(Output.Review.values, 0)
        for output in self.outputs.all():
            counts[output.review] += 1
        return counts

    def earlier_approvals(self) -> dict[str, Output]:
        """Per output name, the approved output of this image in the newest earlier version of the recipe
        that has one: what a new version's output is compared with to keep or flag an approval."""
        version = self.recipe_version
        if version.number <= 1:
            return {}  # no earlier version to compare with
        approved = (
            Output.objects.approved()
            .filter(
                task__source_id=self.source_id,
                task__recipe_version__recipe_id=version.recipe_id,
                task__recipe_version__number__lt=version.number,
            )
            .order_by("task__recipe_version__number", "pk")
        )
        return {output.name: output for output in approved}

    def changed_since_approval(self) -> list[Output]:
        """Outputs a new version rendered differently from an approved earlier one; reads prefetched outputs."""
        return [output for output in self.outputs.all() if output.changed_since_approval]

    def park(self, attempt: int, *, message: str) -> bool:
        """Wait, without a job, until someone resumes the campaign's remote work."""
        return bool(
            self.running_attempt(attempt).update(
                state=self.State.PAUSED,
                lease_expires_at=None,
                next_attempt_at=None,
                deferrals=F("deferrals") + 1,
                error_code="paused",
                error_message=message,
                error_step="",
            )
        )


class Progress:
    """Counts per state for a set of tasks, with throughput and an ETA."""

    WINDOW = timedelta(minutes=5)

    def __init__(self, counts: dict[str, int], retrying: int, recent_finished: int, window_seconds: float):
        self.counts = counts
        self.retrying = retrying
        self.total = sum(counts.values())
        self.done = sum(counts.get(state, 0) for state in Task.TERMINAL_STATES)
        self.succeeded = counts.get(Task.State.SUCCEEDED, 0)
        self.failed = counts.get(Task.State.FAILED, 0) + counts.get(Task.State.DEAD, 0)
        self.remaining = self.total - self.done
        self.per_minute = recent_finished * 60 / window_seconds if window_seconds > 0 else 0.0
        self.percent = (100 * self.done // self.total) if self.total else 0

    @classmethod
    def for_tasks(cls, tasks: TaskQuerySet) -> Progress:
        # COUNT(*), not COUNT(id): PostgreSQL answers these from the indexes alone only when no column
        # outside them is named (SQLite's indexes carry the id, PostgreSQL's do not): 36 ms → 10 ms for
        # 100,000 tasks.
        counts = {row["state"]: row["n"] for row in tasks.order_by().values("state").annotate(n=Count("*"))}
        now = timezone.now()
        recent = tasks.filter(finished_at__gte=now - cls.WINDOW).order_by()
        stats = recent.aggregate(n=Count("*"), since=models.Min("started_at"))
        retrying = 0
        if counts.get(Task.State.QUEUED):  # only a queued task can be retrying
            retrying = tasks.filter(state=Task.State.QUEUED, attempts__gt=0).exclude(error_message="").count()
        window = 0.0
        if stats["n"]:
            # A run that started a minute ago is averaged over that minute, not the whole window.
            window = (now - stats["since"]).total_seconds() if stats["since"] else cls.WINDOW.total_seconds()
            window = min(max(window, 1.0), cls.WINDOW.total_seconds())
        return cls({str(k): v for k, v in counts.items()}, retrying, stats["n"], window)

    @property
    def eta_seconds(self) -> float | None:
        if not self.remaining or self.per_minute <= 0 or self.is_waiting_for_resume:
            return None
        return self.remaining / self.per_minute * 60

    @property
    def is_finished(self) -> bool:
        return self.total > 0 and self.remaining == 0

    @property
    def is_waiting_for_resume(self) -> bool:
        """Everything left is paused (credits or the budget cap): no countdown means anything now."""
        paused = self.count(Task.State.PAUSED)
        return bool(paused) and paused == self.remaining

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)

"""RQ entry points: thin functions that load rows by primary key, run the pipeline and record the result."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from dashboard.models import Campaign, Output, Task
from dashboard.storage import read_bytes
from jobs.cpu_gate import cpu_turn, waited
from jobs.errors import (
    CreditsExhaustedError,
    DeferredError,
    PermanentError,
    RateLimitedError,
    StepError,
    TransientError,
)
from jobs.leases import LeaseKeeper
from jobs.operations import OperationContext
from jobs.queueing import get_process_queue, job_id_for, schedule_attempt
from jobs.remote import RemoteRunner
from jobs.rendering import PipelineResult, run_pipeline
from jobs.retry import error_for_unexpected, handed_back_delay, next_attempt_delay
from jobs.telemetry import JOBS_IN_PROGRESS, record_steps, record_task
from jobs.webhooks import campaign_run_finished

logger = logging.getLogger("pixelmill.tasks")


def output_key(task: Task, name: str, extension: str) -> str:
    """Deterministic: a retried attempt overwrites its own earlier file instead of adding one."""
    return f"outputs/c{task.campaign_id}/t{task.pk}/{name}.{extension}"


def process_task(task_id: int, attempt: int) -> str:
    """Run one attempt of one task; a duplicate or stale delivery returns without doing anything."""
    job = get_current_job()
    worker = (job.worker_name if job else None) or f"{socket.gethostname()}:{os.getpid()}"
    if not Task.claim(task_id, attempt, worker):
        logger.info("attempt skipped", extra={"task": task_id, "attempt": attempt, "outcome": "skipped"})
        return "skipped"
    started = time.perf_counter()
    outcome = "failed"
    with JOBS_IN_PROGRESS.track_inprogress():
        try:
            outcome = run_claimed_attempt(task_id, attempt, job)
            return outcome
        finally:
            # An error code is a failure, whether it retries or not; a wait is not.
            kind = outcome if outcome in ("succeeded", "deferred", "paused") else "failed"
            record_task(kind, time.perf_counter() - started)


def run_claimed_attempt(task_id: int, attempt: int, job: Job | None) -> str:
    """The attempt this worker claimed: run it and record its outcome; returns the outcome or error code."""
    task = Task.objects.select_related("source", "recipe_version__recipe", "campaign").get(pk=task_id)
    step = "load"
    started = time.perf_counter()
    remote = task.uses_providers()
    if remote and task.campaign.remote_paused_reason:
        return park(task, attempt, task.campaign.remote_paused_reason, started)

    def enter_step(name: str) -> None:
        nonlocal step
        step = name

    runner = RemoteRunner(
        connection=get_process_queue().connection,
        campaign_id=task.campaign_id,
        log_context={"task": task.pk, "attempt": attempt, "job_id": job_id_for(task.pk, attempt)},
    )
    try:
        with LeaseKeeper(lambda: task.heartbeat(attempt), f"task-{task.pk}"), runner, cpu_turn():
            return run_attempt(task, attempt, started, enter_step, runner if remote else None)
    except CreditsExhaustedError as error:  # the provider's credits, or the campaign's budget cap
        Campaign.pause_remote(task.campaign_id, code=error.code, reason=error.message)
        return park(task, attempt, error.message, started)
    except (DeferredError, RateLimitedError) as error:
        if task.deferrals < settings.PIXELMILL_MAX_DEFERRALS:
            return defer(task, attempt, error, step, started)
        record_failure(task, attempt, TransientError(error.message, code=error.code), step, started)
        return error.code
    except StepError as error:
        step = error.step or step
        if error.ref:  # the pipeline caught a bug of its own (an InternalError): staff need its traceback
            log_unexpected(error.__cause__ or error, error, task=task_id, attempt=attempt, step=step)
        record_failure(task, attempt, error, step, started)
        return error.code
    except JobTimeoutException:
        timeout = TransientError(
            f"The step took longer than the {job.timeout if job else '?'} s limit.", code="timeout"
        )
        record_failure(task, attempt, timeout, step, started)
        return timeout.code
    except Exception as exc:
        # An interruption (queue, database, storage, memory) retries; a bug fails now, not five times over
        # ten minutes. Staff find the traceback in the log and on the admin page under the same ref.
        unexpected = error_for_unexpected(exc, doing="rendering this image")
        log_unexpected(exc, unexpected, task=task_id, attempt=attempt, step=step)
        record_failure(task, attempt, unexpected, step, started)
        return unexpected.code
    finally:
        if runner.calls:
            record_calls(task.pk, attempt, runner.calls)


def log_unexpected(cause: BaseException, error: StepError, **context: object) -> None:
    """The exception behind a failure no step anticipated, with its traceback and the ref the marketer sees."""
    logger.error(
        "unexpected error",
        exc_info=(type(cause), cause, cause.__traceback__),
        extra={**context, "error_ref": error.ref},
    )


def run_attempt(
    task: Task,
    attempt: int,
    started: float,
    enter_step: Callable[[str], None],
    runner: RemoteRunner | None = None,
) -> str:
    """Load, run the pipeline, store every output, and only then mark the task succeeded."""
    steps = task.build_steps()
    specs = task.recipe_version.build_specs()
    assert task.source.file.name  # a source image is only saved with its file
    source_bytes = read_bytes(task.source.file.name)
    context = OperationContext.default()
    if runner is not None:
        context = OperationContext(load_asset=context.load_asset, remote=runner)
    result = run_pipeline(
        source_bytes,
        steps,
        specs,
        context=context,
        max_pixels=settings.PIXELMILL_MAX_PIXELS,
        on_step=enter_step,
        focus=task.source.focal_point,
    )
    enter_step("store")
    store_started = time.perf_counter()
    store_result(task, result)
    timings = dict(result.timings)
    timings["store"] = round((time.perf_counter() - store_started) * 1000, 1)
    record_steps(timings)
    timings["total"] = round((time.perf_counter() - started) * 1000, 1)
    if waited() >= 0.001:  # a threaded worker: part of the total went on waiting for the process's CPU turn
        timings["cpu_wait"] = round(waited() * 1000, 1)
    task.mark_succeeded(attempt, timings=timings)
    providers = ",".join(dict.fromkeys(call["provider"] for call in runner.calls)) if runner else None
    task.log_attempt(attempt, step="done", outcome="succeeded", started=started, provider=providers or None)
    announce_if_run_finished(task.campaign_id)
    return "succeeded"


def announce_if_run_finished(campaign_id: int) -> None:
    """The last piece of a run to finish sends the campaign's webhook; a webhook problem never fails work."""
    try:
        campaign_run_finished(campaign_id)
    except Exception:
        logger.exception("webhook bookkeeping failed", extra={"campaign": campaign_id})


def store_result(task: Task, result: PipelineResult) -> None:
    """Files first, then every Output row in one upsert and one commit (a retried attempt overwrites
    its own rows): six update_or_create calls took six write locks, which two SQLite workers queue on.

    An output with the same bytes as the approved one of an earlier recipe version stays approved; a
    different one waits for review, pointing at the approval it no longer matches. The same version
    rendered again (a subject point chosen, a requeue) keeps a review only where the bytes are the same:
    an approved crop that moved goes back to review.
    """
    earlier = task.earlier_approvals()
    # Before the files are written: a new render overwrites the same keys.
    reviewed = {
        output.name: output.content_hash()
        for output in task.outputs.exclude(review=Output.Review.PENDING).only("pk", "name", "file", "sha256")
    }
    rows = []
    for rendered in result.outputs:
        key = output_key(task, rendered.spec.name, rendered.spec.extension)
        stored = default_storage.save(key, ContentFile(rendered.data))
        rows.append(
            Output(
                task=task,
                name=rendered.spec.name,
                file=stored,
                width=rendered.width,
                height=rendered.height,
                format=rendered.spec.format,
                byte_size=len(rendered.data),
                sha256=hashlib.sha256(rendered.data).hexdigest(),
                quality=rendered.quality,
                violations=[violation.to_dict() for violation in rendered.violations],
                earlier_approved=earlier.get(rendered.spec.name),
                source_window=list(rendered.window),
            )
        )
    # Before the transaction: an earlier output stored without a hash is read from storage once.
    same_bytes = [
        row for row in rows if row.earlier_approved and row.earlier_approved.content_hash() == row.sha256
    ]
    preview = default_storage.save(output_key(task, "_preview", "webp"), ContentFile(result.preview))
    with transaction.atomic():
        Output.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["task", "name"],
            update_fields=[
                "file", "width", "height", "format", "byte_size", "sha256", "quality", "violations",
                "earlier_approved", "source_window",
            ],
        )  # fmt: skip
        # An output an earlier attempt made that this one did not (the photo became too small for it).
        Output.objects.filter(task=task).exclude(name__in=[row.name for row in rows]).delete()
        changed = [row.name for row in rows if row.name in reviewed and reviewed[row.name] != row.sha256]
        if changed:
            Output.objects.filter(task=task, name__in=changed).update(
                review=Output.Review.PENDING, reviewed_by=None, reviewed_at=None
            )
        for row in same_bytes:
            assert row.earlier_approved is not None
            Output.objects.filter(task=task, name=row.name).pending_review().carry_approval(
                row.earlier_approved
            )
        Task.objects.filter(pk=task.pk).update(preview=preview, notes=result.notes)


def record_calls(task_id: int, attempt: int, calls: list[dict[str, Any]]) -> None:
    """Keep what each provider call returned (request ids, credits, scores) with the task, newest last."""
    task = Task.objects.filter(pk=task_id).only("provider_calls").first()
    if task is not None:
        entries = [*task.provider_calls, *({"attempt": attempt, **call} for call in calls)][-50:]
        Task.objects.filter(pk=task_id).update(provider_calls=entries)


def defer(
    task: Task, attempt: int, error: DeferredError | RateLimitedError, step: str, started: float
) -> str:
    """Give the attempt back without counting it as a failure, due again after the wait."""
    delay = handed_back_delay(error.retry_after)
    at = timezone.now() + timedelta(seconds=delay)
    if task.requeue(attempt, at=at, count_as_failure=False, message=error.message):
        transaction.on_commit(lambda: schedule_attempt(task.pk, attempt + 1, at))
    task.log_attempt(attempt, step=step, outcome="deferred", started=started, error=error, retry_in=delay)
    return "deferred"


def park(task: Task, attempt: int, reason: str, started: float) -> str:
    """The campaign's remote work is paused: wait, without a job, until someone resumes it."""
    task.park(attempt, message=f"Waiting: remote work for this campaign is paused. {reason}")
    task.log_attempt(attempt, step="load", outcome="paused", started=started)
    return "paused"


def record_failure(task: Task, attempt: int, error: StepError, step: str, started: float) -> None:
    permanent = isinstance(error, PermanentError)
    if permanent or attempt - task.deferrals >= task.max_attempts:
        task.mark_failed(
            attempt,
            code=error.code,
            message=error.message,
            step=step,
            permanent=permanent,
            detail=error.detail,
        )
        outcome = "failed" if permanent else "dead"
        task.log_attempt(attempt, step=step, outcome=outcome, started=started, error=error)
        announce_if_run_finished(task.campaign_id)
        return
    delay = next_attempt_delay(attempt, retry_after=getattr(error, "retry_after", None))
    at = timezone.now() + timedelta(seconds=delay)
    if task.requeue(attempt, at=at, code=error.code, message=error.message, error_step=step[:40]):
        transaction.on_commit(lambda: schedule_attempt(task.pk, attempt + 1, at))
    task.log_attempt(attempt, step=step, outcome="retry", started=started, error=error, retry_in=delay)

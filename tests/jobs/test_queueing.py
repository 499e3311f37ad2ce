"""RQ entry points: every enqueued dotted path resolves to a `_task` function, and jobs queued under an old name still run."""

from __future__ import annotations

import pytest
from rq.utils import import_attribute

from jobs import generation, webhooks
from jobs.queueing import GENERATIONS, TASKS, URL_IMPORTS


@pytest.mark.parametrize("kind", [TASKS, GENERATIONS, URL_IMPORTS], ids=lambda kind: kind.prefix)
def test_every_job_kind_runs_a_task_function(kind):
    function = import_attribute(kind.func)
    assert callable(function) and kind.func.endswith("_task") and function.__name__.endswith("_task")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("jobs.generation.run_generation", generation.run_generation_task),
        ("jobs.webhooks.deliver_webhook", webhooks.deliver_webhook_task),
        ("jobs.webhooks.retry_due_webhooks", webhooks.retry_due_webhooks_task),
    ],
)
def test_a_job_queued_before_the_rename_runs_the_renamed_task(old, new):
    """Jobs waiting in Redis across a deploy name the path they were enqueued with; it must still resolve."""
    assert import_attribute(old) is new


@pytest.mark.parametrize("at_front", [False, True], ids=["back", "front"])
def test_a_bulk_enqueue_leaves_each_job_as_rq_would_and_a_worker_runs_them(redis_conn, at_front):
    """RQ enqueues the first job of each thousand; the rest are written from its hash with their own call.
    Each must read back as RQ's own would, in RQ's order, and run."""
    from rq import SimpleWorker
    from rq.job import Job, JobStatus

    from jobs.queueing import JobKind, enqueue_attempts, get_process_queue

    adding = JobKind("operator.add", "sum", "add numbers")
    queue = get_process_queue()
    queue.enqueue(print, job_id="already-waiting")
    attempts = [(pk, pk % 3 + 1) for pk in range(1, 1203)]  # two batches, the second of 202
    assert enqueue_attempts(attempts, adding, at_front=at_front) == 1202

    first, copied = (
        Job.fetch("sum-1-a2", connection=redis_conn),
        Job.fetch("sum-1202-a3", connection=redis_conn),
    )
    for job, (pk, attempt) in ((first, (1, 2)), (copied, (1202, 3))):
        assert (job.func_name, job.args, job.kwargs) == ("operator.add", (pk, attempt), {})
        assert job.description == f"add numbers {pk} attempt {attempt}"
        assert job.get_status() == JobStatus.QUEUED and job.origin == "default"
    differing = {"data", "description", "created_at", "enqueued_at"}
    same = {key: value for key, value in first.to_dict().items() if key not in differing}
    assert {key: value for key, value in copied.to_dict().items() if key not in differing} == same

    ids = [f"sum-{pk}-a{attempt}" for pk, attempt in attempts]
    expected = [*reversed(ids), "already-waiting"] if at_front else ["already-waiting", *ids]
    assert queue.get_job_ids() == expected
    queue.remove("already-waiting")
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert Job.fetch("sum-1202-a3", connection=redis_conn).return_value() == 1205
    assert Job.fetch("sum-1-a2", connection=redis_conn).return_value() == 3

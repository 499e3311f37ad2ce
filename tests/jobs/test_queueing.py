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

"""Periodic jobs for `manage.py rqcron jobs.cron`: the reconcilers run on the control queue."""

from django.conf import settings
from rq import cron

from jobs.queueing import CONTROL_QUEUE
from jobs.reconciler import reconcile_task
from jobs.webhooks import retry_due_webhooks_task

cron.register(
    reconcile_task,
    queue_name=CONTROL_QUEUE,
    interval=settings.PIXELMILL_RECONCILE_INTERVAL_SECONDS,
    job_timeout=120,
    result_ttl=300,
)

# Webhook retries are scheduled in Redis; this sends again the ones Redis lost.
cron.register(
    retry_due_webhooks_task,
    queue_name=CONTROL_QUEUE,
    interval=settings.PIXELMILL_RECONCILE_INTERVAL_SECONDS,
    job_timeout=120,
    result_ttl=300,
)

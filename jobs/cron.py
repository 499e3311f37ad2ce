"""Periodic jobs for `manage.py rqcron jobs.cron`: the reconciler runs on the control queue."""

from django.conf import settings
from rq import cron

from jobs.queueing import CONTROL_QUEUE
from jobs.tasks import reconcile_task

cron.register(
    reconcile_task,
    queue_name=CONTROL_QUEUE,
    interval=settings.PIXELMILL_RECONCILE_INTERVAL_SECONDS,
    job_timeout=120,
    result_ttl=300,
)

"""The RQ worker classes Pixelmill runs, chosen with PIXELMILL_WORKER_CLASS.

`PixelmillWorker` (the default) runs each job in the worker process itself, one at a time, like RQ's
SimpleWorker. RQ's default forks a work-horse per job, and on a small machine that fork costs more than
a remote step's own work: with 4 workers against a provider allowing 20 requests/s, forking reached 67%
of the limit and 160 MB per worker, running in-process 99.8% and 95 MB (`make bench-providers`). What the
fork would have bought, we get otherwise: a job killed mid-way (the worker with it) is recovered by the
lease and the reconciler like any lost worker, a job over its timeout is stopped by RQ's SIGALRM death
penalty, and a worker restarted every `--max-jobs` jobs cannot accumulate memory.

`ForkingPixelmillWorker` keeps RQ's fork per job for those who prefer that isolation; both warm up once.
"""

from __future__ import annotations

from django.db import close_old_connections
from rq import SimpleWorker, Worker


def warm_up() -> None:
    """Import and build what every job needs; nothing here may open a database or Redis connection.

    With forking, whatever a work-horse imports dies with it: without this, every job would import httpx,
    numpy and the operations again and build a TLS context, about 0.3 s of CPU.
    """
    from PIL import Image

    import jobs.generation  # noqa: F401
    import jobs.reconciler  # noqa: F401
    import jobs.tasks  # noqa: F401  (imports the pipeline, the operations, numpy and httpx)
    import jobs.url_imports  # noqa: F401
    import jobs.webhooks  # noqa: F401
    from jobs.providers.client import tls_context

    Image.init()
    tls_context()


class PixelmillWorker(SimpleWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        warm_up()

    def execute_job(self, job, queue) -> None:
        # A long-lived process must drop connections that broke (a database restart) or grew too old,
        # as Django does around each web request.
        close_old_connections()
        try:
            super().execute_job(job, queue)
        finally:
            close_old_connections()


class ForkingPixelmillWorker(Worker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        warm_up()

"""The RQ worker classes Pixelmill runs, chosen with PIXELMILL_WORKER_CLASS.

`PixelmillWorker` (the default) runs each job in the worker process itself, one at a time, like RQ's
SimpleWorker. RQ's default forks a work-horse per job, and on a small machine that fork costs more than
a remote step's own work: with 4 workers against a provider allowing 20 requests/s, forking reached 67%
of the limit and 160 MB per worker, running in-process 99.8% and 95 MB (`make bench-providers`). What the
fork would have bought, we get otherwise: a job killed mid-way (the worker with it) is recovered by the
lease and the reconciler like any lost worker, a job over its timeout is stopped by RQ's SIGALRM death
penalty, and a worker restarted every `--max-jobs` jobs cannot accumulate memory.

With PIXELMILL_WORKER_THREADS above 1 (4 by default), a `PixelmillWorker` process runs that many RQ
workers, one per thread, so a process keeps several provider calls in flight for the memory of one (a
remote step only waits): one process of 10 threads reached a 20 requests/s provider's limit for 119 MB,
where one job per process took 4 processes and 379 MB (`make bench-providers`). Each thread is a worker of its own to RQ (named `<name>.t2`, `<name>.t3`, …), with its own
heartbeat and its own job; local work takes the process's one CPU turn (`jobs.cpu_gate`), so threads
never render side by side. The main thread handles the signals: a first SIGTERM lets every thread
finish its job, a second one ends the process, and leases and the reconciler recover what was running.

`ForkingPixelmillWorker` keeps RQ's fork per job for those who prefer that isolation. Both import the job
modules once; only the forking one loads numpy, OpenCV and httpx up front (see `warm_up_libraries`).
"""

from __future__ import annotations

import ctypes
import platform
import sys
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker, worker_registration
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from rq.worker import BaseWorker

from jobs import telemetry


def warm_up() -> None:
    """Import the job entry points and Pillow's plugins; nothing here may open a database or Redis connection.

    Only what every job needs: numpy and OpenCV (about 40 MB resident, for the steps that find a subject
    or cut one out), httpx and the TLS context (for provider calls, URL imports and webhooks) are loaded
    by the first job that uses them, so a worker that renders JPEGs or waits on providers never carries
    the rest (`make bench-memory`).
    """
    from PIL import Image

    import jobs.deferred_uploads  # noqa: F401
    import jobs.generation  # noqa: F401
    import jobs.reconciler  # noqa: F401
    import jobs.tasks  # noqa: F401
    import jobs.url_imports  # noqa: F401
    import jobs.webhooks  # noqa: F401

    Image.init()


def warm_up_libraries() -> None:
    """What a job may load on first use, loaded now: for a forking worker, whose work-horse would
    otherwise import numpy, OpenCV and httpx and build a TLS context again on every job (about 0.3 s of
    CPU), since whatever a horse imports dies with it."""
    import httpx  # noqa: F401

    import jobs.operations.cutout  # noqa: F401  (numpy, OpenCV)
    import jobs.operations.saliency  # noqa: F401
    from jobs.providers.client import tls_context

    tls_context()


def one_malloc_arena() -> None:
    """Keep glibc's malloc to one arena, before the threads start.

    glibc gives each thread that allocates its own arena, and a render's freed buffers stay cached in
    the arena of the thread that rendered: with 4 threads taking turns on 12 MP renders the worker's
    peak was 190 MB against 140 MB with one thread (`make bench-e2e`), 148 MB with one arena. Only one
    thread renders at a time, so the arena's lock is hardly contended. MALLOC_ARENA_MAX does the same
    from the environment; this way `rqworker` needs no wrapper.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    M_ARENA_MAX = -8  # malloc.h
    ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


class RegisteredWorker(BaseWorker):
    """Keeps itself registered: RQ's heartbeat only refreshes a timestamp, so a worker whose registration
    Redis lost (FLUSHALL, a failover to an empty replica) would work on unseen by `Worker.all()` and by
    everything that counts workers. Each heartbeat puts back what is missing, and an idle worker beats
    every PIXELMILL_WORKER_HEARTBEAT_SECONDS instead of RQ's 405 s."""

    @property
    def dequeue_timeout(self) -> int:
        return min(super().dequeue_timeout, settings.PIXELMILL_WORKER_HEARTBEAT_SECONDS)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        super().heartbeat(timeout, pipeline)
        # A pipelined beat (during a forked job) is followed by a plain one after the job; before its birth
        # a worker has nothing to register again.
        if pipeline is None and self.birth_date is not None:
            self.register_again_if_forgotten(timeout or self.worker_ttl + 60)

    def register_again_if_forgotten(self, ttl: int) -> None:
        with self.connection.pipeline() as pipe:
            pipe.sismember(self.redis_workers_keys, self.key)
            pipe.hexists(self.key, "birth")
            registered, described = pipe.execute()
        if registered and described:
            return
        self.log.warning("Worker %s: Redis had forgotten this worker; registering it again", self.name)
        state = self.get_state()
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping={**self.serialize(), "state": str(getattr(state, "value", state))})
            worker_registration.register(self, pipe)
            pipe.expire(self.key, ttl)
            pipe.execute()


class InProcessWorker(RegisteredWorker, SimpleWorker):
    """Runs each job in the thread that took it (no fork), between fresh database connections."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        # A long-lived process must drop connections that broke (a database restart) or grew too old,
        # as Django does around each web request.
        close_old_connections()
        try:
            super().execute_job(job, queue)
        finally:
            close_old_connections()


class PixelmillWorker(InProcessWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        warm_up()
        threads = max(1, settings.PIXELMILL_WORKER_THREADS)
        self.siblings: list[ThreadWorker] = []
        if threads > 1:
            one_malloc_arena()
            # A thread whose booked provider call is due waits for the GIL behind the thread that holds it
            # (rendering, RQ's bookkeeping), up to the switch interval each time it blocks on a socket; at
            # CPython's 5 ms, a few of those turned into tens of milliseconds between the limiter letting a
            # call go and its bytes leaving, and calls reached the provider bunched (docs/performance.md).
            sys.setswitchinterval(0.001)
            # SIGALRM reaches only the main thread: every thread's job timeout is a timer instead.
            self.death_penalty_class = TimerDeathPenalty
            self.siblings = [
                ThreadWorker(
                    self.queues,
                    name=f"{self.name}.t{number}",
                    connection=self.connection,
                    serializer=self.serializer,
                    worker_ttl=self.worker_ttl,
                    job_monitoring_interval=self.job_monitoring_interval,
                )
                for number in range(2, threads + 1)
            ]

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        if not self.siblings:
            return super().work(burst, *args, **kwargs)
        options = {**kwargs, "with_scheduler": False}  # one scheduler per process, the main thread's
        self.sibling_threads = [
            threading.Thread(
                target=sibling.work, args=(burst, *args), kwargs=options, name=sibling.name, daemon=True
            )
            for sibling in self.siblings
        ]
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            # Warm: each thread finishes the job it holds. A second signal interrupts the join
            # (SystemExit), and the daemon threads end with the process.
            self.stop_siblings()
            for thread in self.sibling_threads:
                if thread.is_alive():
                    thread.join()

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # RQ's work() gets here after the scheduler (a forked process) started: the other threads
        # start now, so that fork copies a process with one thread.
        for thread in getattr(self, "sibling_threads", ()):
            thread.start()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_siblings()
        super().request_stop(signum, frame)

    def stop_siblings(self) -> None:
        """Ask every other thread to stop once its job is done (an idle one notices within its poll)."""
        for sibling in self.siblings:
            sibling._stop_requested = True


class ThreadWorker(InProcessWorker):
    """One more RQ worker in a threaded worker's process, which warmed up for it: no signals of its
    own, a timer for the job timeout, and an idle one looks up every `poll_seconds` to see whether the
    main thread asked it to stop."""

    poll_seconds = 2
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # only the main thread may; it passes a stop on

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        if timeout is None:  # burst: one look, no wait
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        idle = 0
        while not self._stop_requested:
            wait = (
                self.poll_seconds if max_idle_time is None else min(self.poll_seconds, max_idle_time - idle)
            )
            if wait <= 0:
                return None
            result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            if result is not None:
                return result
            idle += wait
        return None


class ForkingPixelmillWorker(RegisteredWorker, Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        warm_up()
        warm_up_libraries()

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        super().fork_work_horse(job, queue)
        self.last_horse_pid = self.horse_pid

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            # The horse left through os._exit, past its own atexit: drop its live gauges here.
            if getattr(self, "last_horse_pid", 0):
                telemetry.mark_dead(self.last_horse_pid)

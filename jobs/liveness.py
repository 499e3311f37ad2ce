"""Container health checks for workers and the scheduler: is a process of this host registered in Redis?

`python -m jobs.liveness worker` (or `scheduler`) exits 0 when Redis lists an RQ worker (or rqcron
scheduler) started on this host, else 1. RQ keeps a worker's registration alive while it lives (through a
job as long as the job's timeout) and the scheduler's through its heartbeat, so a hung or dead process
drops out. No Django: a check every 30 s should cost a Redis round trip, not a Django start-up, and leave
no file in the metrics folder.
"""

from __future__ import annotations

import os
import socket
import sys

from redis import Redis
from rq import Worker
from rq.cron import CronScheduler

DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"  # dashboard.settings' default, the embedded Redis


def registered_here(kind: str, connection: Redis, host: str) -> bool:
    if kind == "worker":
        return any(worker.hostname == host for worker in Worker.all(connection=connection))
    return any(scheduler.hostname == host for scheduler in CronScheduler.all(connection))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("worker", "scheduler"):
        print("usage: python -m jobs.liveness worker|scheduler", file=sys.stderr)
        return 2
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    connection = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        alive = registered_here(argv[0], connection, socket.gethostname())
    except Exception as error:  # Redis unreachable: the process cannot work either
        print(f"{argv[0]}: Redis did not answer ({error!r})", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {'registered' if alive else 'not registered'} on {socket.gethostname()}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

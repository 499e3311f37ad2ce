"""Leases: a running attempt proves it is alive by renewing a timestamp the reconciler watches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger("pixelmill.leases")


class LeaseKeeper:
    """Renews a running attempt's lease from a thread, so only a worker that died lets it expire.

    `heartbeat` renews the lease of exactly that row in that attempt (`AttemptModel.heartbeat`): once the
    attempt ends (or another took over) it changes nothing, so renewing does no harm.
    """

    def __init__(self, heartbeat: Callable[[], object], name: str) -> None:
        self.heartbeat = heartbeat
        self.name = name
        self.lease = settings.PIXELMILL_TASK_LEASE_SECONDS
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.renew_until_stopped, name=f"lease-{name}", daemon=True)

    def renew_until_stopped(self) -> None:
        try:
            while not self.stopped.wait(self.lease / 3):
                try:
                    self.heartbeat()
                except DatabaseError:
                    # The database restarted or a connection broke: drop it and renew at the next tick;
                    # giving up would let a live attempt's lease run out and have it taken back.
                    logger.warning("lease renewal failed; trying again", extra={"lease": self.name})
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join()

"""Leases: a running attempt proves it is alive by renewing a timestamp the reconciler watches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger("pixelmill.leases")


def lease_expiry() -> timezone.datetime:
    return timezone.now() + timedelta(seconds=settings.PIXELMILL_TASK_LEASE_SECONDS)


class LeaseKeeper:
    """Renews a running attempt's lease from a thread, so only a worker that died lets it expire.

    `running` gives the queryset of exactly that row in that attempt: once the attempt ends (or another
    took over) it matches nothing and renewing does no harm.
    """

    def __init__(self, running: Callable[[], QuerySet], name: str) -> None:
        self.running = running
        self.name = name
        self.lease = settings.PIXELMILL_TASK_LEASE_SECONDS
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.renew_until_stopped, name=f"lease-{name}", daemon=True)

    def renew_until_stopped(self) -> None:
        try:
            while not self.stopped.wait(self.lease / 3):
                try:
                    self.running().update(lease_expires_at=lease_expiry())
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

"""Empty the Prometheus multiprocess folder before this machine's processes start (compose's setup service)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.telemetry import reset_directory


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        reset_directory(settings.PROMETHEUS_MULTIPROC_DIR)
        self.stdout.write(f"Emptied {settings.PROMETHEUS_MULTIPROC_DIR}")

"""Write deterministic sample product photos (JPEG) into a folder, for demos and load runs."""

from __future__ import annotations

import math
from pathlib import Path

from django.core.management.base import BaseCommand

from jobs.samples import product_jpeg


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--count", type=int, default=20)
        parser.add_argument("--megapixels", type=float, default=12.0)

    def handle(self, *args, directory: Path, count: int, megapixels: float, **options) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # 4:3, the shape of most camera sensors.
        width = int(math.sqrt(megapixels * 1_000_000 * 4 / 3))
        height = int(width * 3 / 4)
        for seed in range(count):
            (directory / f"sample-{seed:04d}.jpg").write_bytes(product_jpeg(width, height, seed))
        self.stdout.write(f"Wrote {count} JPEGs of {width}×{height} to {directory}.")

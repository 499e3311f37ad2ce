"""Which part of its source an output shows: kept when it was rendered, traced again for older outputs."""

from __future__ import annotations

import logging

from django.conf import settings

from dashboard.models import Output
from dashboard.storage import read_bytes
from jobs.errors import StepError
from jobs.operations import build_operation
from jobs.rendering import Box, trace_windows

logger = logging.getLogger(__name__)


def source_window_of(output: Output) -> Box | None:
    """The output's window in its source (fractions: left, top, right, bottom); None when it cannot be known.

    Outputs rendered before the window was recorded have it traced once, for every output of their task,
    by running the task's recipe version again on a small copy of the source with local steps, and kept.
    """
    if output.source_window:
        return as_box(output.source_window)
    task = output.task
    definition = task.recipe_version.definition
    try:
        # Local steps: a provider's result has the same geometry as ours (it is checked to), and the
        # trace must cost nothing.
        steps = [build_operation(step["operation"], step.get("params")) for step in definition["steps"]]
        specs = task.recipe_version.build_specs()
        assert task.source.file.name  # a source image is only saved with its file
        source = read_bytes(task.source.file.name)
        windows = trace_windows(
            source, steps, specs, max_pixels=settings.PIXELMILL_MAX_PIXELS, focus=task.source.focal_point
        )
    except (StepError, OSError, ValueError, KeyError) as error:
        logger.warning("could not trace the source window", extra={"output": output.pk, "error": str(error)})
        return None
    for name, window in windows.items():
        Output.objects.filter(task=task, name=name, source_window__isnull=True).update(
            source_window=list(window)
        )
    window = windows.get(output.name)
    if window is not None:
        output.source_window = list(window)
    return window


def as_box(value: list[float]) -> Box | None:
    if len(value) != 4 or value[2] <= value[0] or value[3] <= value[1]:
        return None
    left, top, right, bottom = (float(v) for v in value)
    return left, top, right, bottom

"""The one registry of recipe steps: operation name to class, and building a validated step from its params."""

from __future__ import annotations

from collections.abc import Mapping

from jobs.operations.base import Operation
from jobs.operations.framing import Canvas, SmartCrop
from jobs.operations.overlays import TextOverlay, Watermark
from jobs.operations.params import OperationParamsError
from jobs.operations.retouching import Enhance, RemoveBackground, Upscale

OPERATIONS: dict[str, type[Operation]] = {
    RemoveBackground.name: RemoveBackground,
    Enhance.name: Enhance,
    Upscale.name: Upscale,
    Canvas.name: Canvas,
    SmartCrop.name: SmartCrop,
    Watermark.name: Watermark,
    TextOverlay.name: TextOverlay,
}


def build_operation(name: str, params: Mapping[str, object] | None) -> Operation:
    """The validated operation `name` with `params`; OperationParamsError for anything wrong."""
    operation = OPERATIONS.get(name)
    if operation is None:
        raise OperationParamsError(f"unknown operation {name!r}; choose one of: {', '.join(OPERATIONS)}")
    return operation.from_params(params)

"""Image operations as data: each validates its own params and applies itself with Pillow and numpy."""

from jobs.operations.base import (
    KEPT_WHOLE,
    NOT_MADE,
    Operation,
    OperationContext,
    load_builtin_asset,
    note_messages,
)
from jobs.operations.compositing import carry_hints
from jobs.operations.framing import Canvas, SmartCrop
from jobs.operations.overlays import TextOverlay, Watermark
from jobs.operations.params import (
    OperationParamsError,
    ParamReader,
    aspect_ratio,
    colour_rgb,
    normalise_aspect,
    normalise_colour,
)
from jobs.operations.registry import OPERATIONS, build_operation
from jobs.operations.retouching import MAX_ENHANCE_SHIFT, Enhance, RemoveBackground, Upscale

__all__ = [
    "KEPT_WHOLE",
    "NOT_MADE",
    "MAX_ENHANCE_SHIFT",
    "OPERATIONS",
    "Canvas",
    "Enhance",
    "Operation",
    "OperationContext",
    "OperationParamsError",
    "ParamReader",
    "RemoveBackground",
    "SmartCrop",
    "TextOverlay",
    "Upscale",
    "Watermark",
    "aspect_ratio",
    "build_operation",
    "carry_hints",
    "colour_rgb",
    "load_builtin_asset",
    "normalise_aspect",
    "normalise_colour",
    "note_messages",
]

"""What every recipe step is: the Operation base class, and the context it may draw on (assets, remote runs, notes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Self

from PIL import Image

from jobs.errors import PermanentError
from jobs.operations.params import ASSET_NAME

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

# The codes of the notes a run leaves for its task: background removal kept the photo whole, and an output
# the photo was too small for was not made (the note also names the output).
KEPT_WHOLE = "kept_whole"
NOT_MADE = "not_made"


def load_builtin_asset(name: str) -> bytes:
    """The bytes of a file shipped in jobs/assets/ (logos for `watermark`)."""
    if not ASSET_NAME.match(name) or ".." in name:
        raise PermanentError(f"{name!r} is not a valid asset name.", code="missing_asset")
    path = ASSETS_DIR / name
    if not path.is_file():
        raise PermanentError(f"There is no built-in asset named {name!r}.", code="missing_asset")
    return path.read_bytes()


@dataclass(frozen=True)
class OperationContext:
    """What an operation may need from outside the image: logo bytes, a way to run a step remotely,
    and a list to leave notes in for the task ({"code", "message"}: "kept_whole" and why)."""

    load_asset: Callable[[str], bytes]
    remote: Callable[[Operation, Image.Image], Image.Image] | None = None
    notes: list[dict[str, str]] = field(default_factory=list, compare=False)

    @classmethod
    def default(cls) -> OperationContext:
        return cls(load_asset=load_builtin_asset)

    def note(self, code: str, message: str, **about: str) -> None:
        self.notes.append({"code": code, "message": message, **about})


def note_messages(notes: list[dict[str, str]], code: str) -> list[str]:
    """The messages of the notes with `code`, in the order they were left."""
    return [note.get("message", "") for note in notes if note.get("code") == code]


class Operation(ABC):
    """One recipe step. Subclasses are frozen dataclasses whose fields are the canonical params."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    remote_capable: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        """Validate `params`, fill defaults, and raise OperationParamsError naming what is wrong."""

    def params(self) -> dict[str, object]:
        """All params with defaults filled, in a stable order: cache keys and the admin use it."""
        return {field.name: getattr(self, field.name) for field in fields(self)}  # type: ignore[arg-type]

    @abstractmethod
    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        """Return a new "RGB" or "RGBA" image; `image` is not modified."""

    def source_scale(self) -> float | None:
        """Input resolution needed per unit of output resolution; None when it cannot be known."""
        return 1.0

    def accept_result(
        self, image: Image.Image, result: Image.Image, context: OperationContext
    ) -> Image.Image:
        """Check what a provider made of `image` for this step; the result as it is by default."""
        return result

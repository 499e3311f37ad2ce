"""Generating source images from prompts: prompt lists and CSVs read into specs, and a campaign's counts."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field

from django.db.models import Count

from dashboard.models import Campaign, Generation
from jobs.providers.fal import ImageSizeError, fal_image_size

MAX_PROMPT_CHARS = 2000
MAX_IMAGES_PER_PROMPT = 4
MAX_SEED = 2**63 - 1
CSV_COLUMNS = ("prompt", "seed", "image_size", "num_images")


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    seed: int | None = None
    image_size: str = "square_hd"
    num_images: int = 1


@dataclass
class PromptList:
    specs: list[PromptSpec] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def check_image_size(value: str) -> str:
    """The size as stored on a Generation; raises ImageSizeError with a message for the marketer."""
    parsed = fal_image_size(value)
    return parsed if isinstance(parsed, str) else f"{parsed['width']}x{parsed['height']}"


def check_num_images(value: int | str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_IMAGES_PER_PROMPT:
        raise ValueError(f"images per prompt must be a whole number from 1 to {MAX_IMAGES_PER_PROMPT}")
    return number


def build_spec(prompt: str, seed: str, image_size: str, num_images: str, default: PromptSpec) -> PromptSpec:
    """One prompt with its overrides; empty cells take the form's defaults. Raises ValueError."""
    prompt = " ".join(prompt.split())
    if not prompt:
        raise ValueError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS:,} characters")
    parsed_seed = default.seed
    if seed.strip():
        try:
            parsed_seed = int(seed.strip())
        except ValueError:
            raise ValueError(f"seed {seed.strip()!r} is not a whole number") from None
        if not 0 <= parsed_seed <= MAX_SEED:
            raise ValueError(f"seed {parsed_seed} is out of range (0 to {MAX_SEED})")
    try:
        size = check_image_size(image_size) if image_size.strip() else default.image_size
    except ImageSizeError as error:
        raise ValueError(str(error)) from None
    count = check_num_images(num_images) if num_images.strip() else default.num_images
    return PromptSpec(prompt=prompt, seed=parsed_seed, image_size=size, num_images=count)


def read_prompt_lines(text: str, default: PromptSpec, into: PromptList) -> None:
    """A pasted list: one prompt per line, blank lines skipped; commas are part of the prompt."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            into.specs.append(build_spec(line, "", "", "", default))
        except ValueError as error:
            into.errors.append(f"Line {number}: {error}.")


def read_prompt_csv(text: str, default: PromptSpec, into: PromptList) -> None:
    """A CSV with prompt, seed, image_size, num_images; with a header row the columns may come in any order."""
    rows = list(csv.reader(io.StringIO(text)))
    columns = list(CSV_COLUMNS)
    start = 0
    if rows and rows[0] and rows[0][0].strip().lower().lstrip("\ufeff") in {"prompt", "prompts"}:
        header = [cell.strip().lower() for cell in rows[0]]
        unknown = [name for name in header if name and name not in CSV_COLUMNS]
        if unknown:
            into.errors.append(
                f"CSV row 1: unknown column(s) {', '.join(unknown)}; use {', '.join(CSV_COLUMNS)}."
            )
            return
        columns, start = header, 1
    for number, row in enumerate(rows[start:], start=start + 1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            into.errors.append(f"CSV row {number}: {len(row)} columns; at most {len(columns)}.")
            continue
        cells = dict(zip(columns, row, strict=False))
        try:
            into.specs.append(
                build_spec(
                    cells.get("prompt", ""),
                    cells.get("seed", ""),
                    cells.get("image_size", ""),
                    cells.get("num_images", ""),
                    default,
                )
            )
        except ValueError as error:
            into.errors.append(f"CSV row {number}: {error}.")


@dataclass(frozen=True)
class GenerationCounts:
    """Where a campaign's generations stand, for the progress panel."""

    waiting: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> GenerationCounts:
        counts = {
            row["state"]: row["n"]
            for row in campaign.generations.order_by().values("state").annotate(n=Count("pk"))
        }
        return cls(
            waiting=counts.get(Generation.State.QUEUED, 0),
            running=counts.get(Generation.State.RUNNING, 0),
            done=counts.get(Generation.State.SUCCEEDED, 0),
            failed=counts.get(Generation.State.FAILED, 0) + counts.get(Generation.State.DEAD, 0),
            cancelled=counts.get(Generation.State.CANCELLED, 0),
        )

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    @property
    def unfinished(self) -> int:
        return self.waiting + self.running

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

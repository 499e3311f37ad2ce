"""The campaign download: a ZIP streamed file by file, laid out recipe/output/file, with manifest.csv."""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath

from django.db.models import Max
from zipstream import ZIP_STORED, ZipStream

from dashboard.models import Campaign, Output, Task
from dashboard.storage import read_chunks
from jobs.operations import NOT_MADE

MANIFEST_FIELDS = [
    "path",
    "source",
    "source_sha256",
    "recipe",
    "recipe_version",
    "output",
    "width",
    "height",
    "format",
    "bytes",
    "task_state",
    "review",
    "error",
]


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) in a file name).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def spreadsheet_safe(value: object) -> object:
    """The cell as text a spreadsheet will not evaluate: OWASP's advice, a leading single quote, which Excel,
    LibreOffice and Google Sheets read as "this is text" and do not show."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


class ManifestWriter(csv.DictWriter):
    """csv.DictWriter whose every cell goes through `spreadsheet_safe`: names and reasons come from users."""

    def writerow(self, rowdict):
        return super().writerow({key: spreadsheet_safe(value) for key, value in rowdict.items()})


def archive_stem(display_name: str, source_id: int, taken: set[str]) -> str:
    """The source's own name when it is free in that folder, else suffixed with its id."""
    stem = PurePosixPath(display_name).stem or "image"
    if stem in taken:
        stem = f"{stem}-{source_id}"
    taken.add(stem)
    return stem


def task_columns(task: Task) -> dict[str, object]:
    return {
        "path": "",
        "source": task.source.display_name,
        "source_sha256": task.source.sha256,
        "recipe": task.recipe_version.recipe.slug,
        "recipe_version": task.recipe_version.number,
        "task_state": task.state,
    }


def campaign_zip(campaign: Campaign, *, approved_only: bool = False) -> ZipStream:
    """Build the archive lazily: files are read from storage only as the response streams them.

    `approved_only` keeps the outputs a reviewer approved and leaves failures out of the manifest:
    it is the archive that goes to people outside the team.
    """
    # Images are already compressed; storing them costs no CPU and lets the size be known up front.
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    manifest = io.StringIO()
    writer = ManifestWriter(manifest, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    stems: dict[tuple[str, int], str] = {}
    taken: dict[str, set[str]] = {}

    outputs = Output.objects.filter(task__campaign=campaign)
    if approved_only:
        outputs = outputs.approved()
    # A campaign re-run on a new recipe version holds both versions: the newest keeps the plain
    # name, older ones get "-v<n>" so that no two entries share a path.
    newest = {
        (row["task__recipe_version__recipe_id"], row["task__source_id"]): row["newest"]
        for row in outputs.order_by()
        .values("task__recipe_version__recipe_id", "task__source_id")
        .annotate(newest=Max("task__recipe_version__number"))
    }
    outputs = outputs.select_related("task__source", "task__recipe_version__recipe").order_by(
        "task__recipe_version__recipe__slug", "name", "task__source_id", "-task__recipe_version__number", "pk"
    )
    for output in outputs.iterator(chunk_size=2000):
        task = output.task
        version = task.recipe_version
        recipe = version.recipe
        key = (recipe.slug, task.source_id)
        if key not in stems:
            stems[key] = archive_stem(
                task.source.display_name, task.source_id, taken.setdefault(recipe.slug, set())
            )
        stem = stems[key]
        if version.number != newest[(recipe.pk, task.source_id)]:
            stem = f"{stem}-v{version.number}"
        extension = PurePosixPath(output.file.name).suffix
        path = f"{recipe.slug}/{output.name}/{stem}{extension}"
        archive.add(read_chunks(output.file.name), path, size=output.byte_size)
        writer.writerow(
            {
                "path": path,
                "source": task.source.display_name,
                "source_sha256": task.source.sha256,
                "recipe": recipe.slug,
                "recipe_version": version.number,
                "output": output.name,
                "width": output.width,
                "height": output.height,
                "format": output.format,
                "bytes": output.byte_size,
                "task_state": task.state,
                "review": output.review,
                "error": "",
            }
        )
    if not approved_only:
        # Images that did not make it are listed too, so the manifest accounts for every source, and so
        # are the outputs a photo was too small for.
        failures = Task.objects.for_campaign(campaign).failed()
        for task in failures.select_related("source", "recipe_version__recipe"):
            writer.writerow({**task_columns(task), "error": task.error_message})
        short = Task.objects.for_campaign(campaign).filter(notes__icontains=f'"{NOT_MADE}"')
        for task in short.select_related("source", "recipe_version__recipe"):
            for note in task.notes:
                if note.get("code") == NOT_MADE:
                    writer.writerow(
                        {**task_columns(task), "output": note.get("output", ""), "error": note["message"]}
                    )
    archive.add(manifest.getvalue().encode("utf-8"), "manifest.csv")
    return archive

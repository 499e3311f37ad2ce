"""Shared test builders: rows (sources, tasks, recipes), uploads, and the admin's recipe form data."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from dashboard.models import Output, Recipe, SourceImage, Task
from jobs.imaging import probe_image
from tests.jobs.images import photo, png


def make_source(campaign, sha="a" * 64, name="shoe.jpg") -> SourceImage:
    """A source row whose file is never read: enough for counts, estimates and pages."""
    return SourceImage.objects.create(
        campaign=campaign,
        sha256=sha,
        display_name=name,
        file="x.jpg",
        width=10,
        height=10,
        format="JPEG",
        byte_size=1,
    )


def add_source(campaign, data: bytes, name: str = "product.jpg") -> SourceImage:
    """A source row with `data` stored, as an upload leaves it: workers can render it."""
    info = probe_image(data)
    sha = hashlib.sha256(data).hexdigest()
    key = default_storage.save(f"sources/c{campaign.pk}/{sha}.jpg", ContentFile(data))
    return SourceImage.objects.create(
        campaign=campaign, sha256=sha, display_name=name, file=key, width=info.width, height=info.height,
        format=info.format, byte_size=len(data),
    )  # fmt: skip


def make_task(campaign, recipe, *, sha="a" * 64, **fields) -> Task:
    """A task of the recipe's current version on a new source (`make_source`) with the given `sha`."""
    return Task.objects.create(
        campaign=campaign,
        source=make_source(campaign, sha),
        recipe_version=recipe.current_version(),
        **fields,
    )


def make_approved_outputs(campaign, recipe, count: int, reviewer=None) -> list[Output]:
    """`count` new images of `campaign`, each with one approved output of `recipe` stored as a small PNG, as a
    worker and a reviewer leave them: pages of approved pictures without running the pipeline."""
    version = recipe.current_version()
    outputs = []
    for n in range(count):
        source = make_source(
            campaign, sha=hashlib.sha256(f"{recipe.pk}-{n}".encode()).hexdigest(), name=f"look-{n:02d}.jpg"
        )
        task = Task.objects.create(
            campaign=campaign, source=source, recipe_version=version, state=Task.State.SUCCEEDED
        )
        data = png(photo(96, 64, seed=n))
        key = default_storage.save(f"outputs/c{campaign.pk}/t{task.pk}/square.png", ContentFile(data))
        outputs.append(
            Output.objects.create(
                task=task, name="square", file=key, width=96, height=64, format="png", byte_size=len(data),
                sha256=hashlib.sha256(data).hexdigest(), review=Output.Review.APPROVED, reviewed_by=reviewer,
                reviewed_at=timezone.now(),
            )
        )  # fmt: skip
    return outputs


def make_remote_recipe(name: str, steps: list[tuple], outputs: list[dict] | None = None) -> Recipe:
    """A recipe from (operation, params, provider, fallback) steps, published as version 1."""
    recipe = Recipe.objects.create(name=name, slug=name.lower().replace(" ", "-"))
    for position, (operation, params, provider, *fallback) in enumerate(steps):
        recipe.steps.create(
            position=position,
            operation=operation,
            params=params,
            provider=provider,
            fallback=fallback[0] if fallback else None,
        )
    for position, spec in enumerate(outputs or [{"name": "square", "width": 200, "height": 200}]):
        recipe.outputs.create(position=position, **{"fit": "pad", "format": "png", **spec})
    recipe.publish_version()
    return recipe


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def unpack_upload(campaign, name: str, data: bytes):
    """An uploaded zip archive (or large image) as the web request hands it on and a worker brings it in,
    run here in this process: the worker's report (`dashboard.intake.import_deferred`)."""
    from dashboard.intake import import_deferred, import_uploads

    report = import_uploads(campaign, [upload(name, data)])
    assert [row.name for row in report.checking] == [name], report
    return import_deferred(report.checking[0])


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of name → bytes, as a marketer would upload a folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def recipe_form(recipe: Recipe, **step_overrides) -> dict:
    """The change form's POST data for `recipe`, as the admin page would send it."""
    data = {
        "name": recipe.name,
        "slug": recipe.slug,
        "description": recipe.description,
        "is_active": "on",
        "steps-TOTAL_FORMS": str(recipe.steps.count()),
        "steps-INITIAL_FORMS": str(recipe.steps.count()),
        "outputs-TOTAL_FORMS": str(recipe.outputs.count()),
        "outputs-INITIAL_FORMS": str(recipe.outputs.count()),
    }
    for n, step in enumerate(recipe.steps.all()):
        data |= {
            f"steps-{n}-id": str(step.pk),
            f"steps-{n}-recipe": str(recipe.pk),
            f"steps-{n}-position": str(step.position),
            f"steps-{n}-operation": step.operation,
            f"steps-{n}-params": step_overrides.get(step.operation, json.dumps(step.params)),
        }
    for n, output in enumerate(recipe.outputs.all()):
        data |= {
            f"outputs-{n}-id": str(output.pk),
            f"outputs-{n}-recipe": str(recipe.pk),
            f"outputs-{n}-position": str(output.position),
            f"outputs-{n}-name": output.name,
            f"outputs-{n}-width": str(output.width),
            f"outputs-{n}-height": str(output.height),
            f"outputs-{n}-fit": output.fit,
            f"outputs-{n}-format": output.format,
            f"outputs-{n}-quality": "" if output.quality is None else str(output.quality),
            f"outputs-{n}-background": output.background,
            f"outputs-{n}-max_kb": "" if output.max_kb is None else str(output.max_kb),
            f"outputs-{n}-min_width": "" if output.min_width is None else str(output.min_width),
            f"outputs-{n}-min_height": "" if output.min_height is None else str(output.min_height),
            f"outputs-{n}-aspect": output.aspect,
        }
    return data


def multipart_body(
    parts: list[tuple[str, str | bytes | None, bytes]], boundary: str = "pixelmill-test-boundary"
) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand, and its content type: each part is (field, file name or None
    for a plain field, bytes). Names a script may send but Django's test client cannot (empty, ".", not UTF-8,
    over 255 characters) go through byte for byte."""
    separator = b"--" + boundary.encode()
    body = b""
    for field_name, filename, data in parts:
        disposition = b'form-data; name="' + field_name.encode() + b'"'
        if filename is not None:
            raw = filename if isinstance(filename, bytes) else filename.encode()
            disposition += b'; filename="' + raw + b'"'
        kind = b"\r\nContent-Type: application/octet-stream" if filename is not None else b""
        body += separator + b"\r\nContent-Disposition: " + disposition + kind + b"\r\n\r\n" + data + b"\r\n"
    return body + separator + b"--\r\n", f"multipart/form-data; boundary={boundary}"

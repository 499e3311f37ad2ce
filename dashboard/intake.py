"""Bringing images in: uploaded files, zip archives and folders become SourceImage rows, or named refusals."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import stat
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count

from dashboard.models import Campaign, Generation, SourceImage, UrlImport
from jobs.errors import PermanentError
from jobs.imaging import probe_with_thumbnail

ARCHIVE_SUFFIXES = {".zip"}
EXTENSIONS = {
    "JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp", "AVIF": "avif", "HEIF": "heic"
}  # fmt: skip
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class IncomingFile:
    name: str
    data: bytes


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class ImportReport:
    accepted: list[SourceImage] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def sanitize_display_name(name: str) -> str:
    """A name safe to show and to put in a ZIP: no path, no control or bidi characters, bounded length."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/")).split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in {"C"} and ch not in '<>:"|?*')
    name = name.strip().strip(".") or "image"
    stem, dot, suffix = name.rpartition(".")
    if dot and len(suffix) <= 8:
        return f"{stem[:120]}.{suffix}" if stem else name[:120]
    return name[:120]


def read_limited(handle: BinaryIO, limit: int, name: str) -> bytes:
    """Read at most `limit` bytes, refusing (instead of truncating) anything larger."""
    chunks = []
    size = 0
    while chunk := handle.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PermanentError(
                f"is larger than the {limit // (1024 * 1024)} MB limit for one image", code="too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def iter_uploaded(files: Iterable, refused: list[Refusal]) -> Iterator[IncomingFile]:
    """Expand uploaded files (Django UploadedFile objects); zip archives are read member by member."""
    limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    for upload in files:
        name = sanitize_display_name(upload.name or "upload")
        if Path(name).suffix.lower() in ARCHIVE_SUFFIXES:
            yield from iter_zip(upload, name, refused)
            continue
        try:
            yield IncomingFile(name, read_limited(upload, limit, name))
        except PermanentError as error:
            refused.append(Refusal(name, error.message))


def iter_directory(directory: Path, refused: list[Refusal]) -> Iterator[IncomingFile]:
    """Every regular file under `directory`, sorted; zip files are expanded like uploads."""
    limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        name = sanitize_display_name(path.name)
        with path.open("rb") as handle:
            if path.suffix.lower() in ARCHIVE_SUFFIXES:
                yield from iter_zip(handle, name, refused)
                continue
            try:
                yield IncomingFile(name, read_limited(handle, limit, name))
            except PermanentError as error:
                refused.append(Refusal(str(path.relative_to(directory)), error.message))


def iter_zip(handle: BinaryIO, archive_name: str, refused: list[Refusal]) -> Iterator[IncomingFile]:
    """Stream a zip's members, refusing unsafe ones and stopping at the caps before they are exceeded."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError):
        refused.append(Refusal(archive_name, "is not a readable zip archive"))
        return
    member_limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    total_limit = settings.PIXELMILL_ZIP_MAX_TOTAL_BYTES
    total = 0
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > settings.PIXELMILL_ZIP_MAX_MEMBERS:
            refused.append(
                Refusal(
                    archive_name, f"holds {len(members)} files; at most {settings.PIXELMILL_ZIP_MAX_MEMBERS}"
                )
            )
            return
        for info in members:
            label = f"{archive_name}/{sanitize_display_name(info.filename)}"
            reason = zip_member_problem(info)
            if reason:
                refused.append(Refusal(label, reason))
                continue
            if total + info.file_size > total_limit:
                refused.append(Refusal(archive_name, "unpacks to more than the total size limit; stopped"))
                return
            try:
                with archive.open(info) as member:
                    data = read_limited(member, member_limit, label)
            except PermanentError as error:
                refused.append(Refusal(label, error.message))
                continue
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as error:
                refused.append(Refusal(label, f"could not be read from the archive ({error})"))
                continue
            total += len(data)
            if total > total_limit:
                refused.append(Refusal(archive_name, "unpacks to more than the total size limit; stopped"))
                return
            yield IncomingFile(sanitize_display_name(info.filename), data)


def zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return "has an unsafe path inside the archive"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if path.suffix.lower() in ARCHIVE_SUFFIXES | {".tar", ".gz", ".7z", ".rar"}:
        return "is an archive inside the archive; upload it on its own"
    if info.compress_size and info.file_size / info.compress_size > 200:
        return "has a suspicious compression ratio (possible zip bomb)"
    return None


def store_source(
    campaign: Campaign, incoming: IncomingFile, origin: str, *, generation: Generation | None = None
) -> SourceImage | None:
    """Validate and store one file; None when the campaign already holds these bytes."""
    sha256 = hashlib.sha256(incoming.data).hexdigest()
    if SourceImage.objects.filter(campaign=campaign, sha256=sha256).exists():
        return None
    info, thumbnail_bytes = probe_with_thumbnail(incoming.data, max_pixels=settings.PIXELMILL_MAX_PIXELS)
    extension = EXTENSIONS.get(info.format, "img")
    key = f"sources/c{campaign.pk}/{sha256[:2]}/{sha256}.{extension}"
    stored = default_storage.save(key, ContentFile(incoming.data))
    thumbnail = default_storage.save(
        f"sources/c{campaign.pk}/{sha256[:2]}/{sha256}.thumb.webp", ContentFile(thumbnail_bytes)
    )
    try:
        with transaction.atomic():
            return SourceImage.objects.create(
                campaign=campaign,
                sha256=sha256,
                display_name=incoming.name,
                file=stored,
                thumbnail=thumbnail,
                width=info.width,
                height=info.height,
                format=info.format,
                byte_size=len(incoming.data),
                origin=origin,
                generation=generation,
            )
    except IntegrityError:
        return None  # the same bytes arrived twice at once; the other request stored them


def import_images(campaign: Campaign, files: Iterable[IncomingFile], origin: str) -> ImportReport:
    report = ImportReport()
    for incoming in files:
        try:
            source = store_source(campaign, incoming, origin)
        except PermanentError as error:
            report.refused.append(Refusal(incoming.name, error.message))
            continue
        if source is None:
            report.duplicates.append(incoming.name)
        else:
            report.accepted.append(source)
    return report


def import_uploads(campaign: Campaign, files: Iterable) -> ImportReport:
    refused: list[Refusal] = []
    report = import_images(campaign, iter_uploaded(files, refused), SourceImage.Origin.UPLOAD)
    report.refused = refused + report.refused
    return report


def import_directory(campaign: Campaign, directory: Path) -> ImportReport:
    refused: list[Refusal] = []
    report = import_images(campaign, iter_directory(directory, refused), SourceImage.Origin.COMMAND)
    report.refused = refused + report.refused
    return report


def parse_url_list(text: str) -> list[str]:
    """URLs from a pasted list or a CSV whose first column holds them; blanks, comments and a header skipped."""
    urls = []
    for row in csv.reader(io.StringIO(text)):
        cell = row[0].strip() if row else ""
        if cell and not cell.startswith("#") and cell.lower() not in {"url", "image_url"}:
            urls.append(cell)
    return urls


@dataclass(frozen=True)
class UrlImportCounts:
    """Where a campaign's imports by URL stand, for the progress panel."""

    waiting: int = 0
    running: int = 0
    added: int = 0
    duplicates: int = 0
    refused: int = 0

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> UrlImportCounts:
        rows = campaign.url_imports.order_by().values("state", "duplicate").annotate(n=Count("pk"))
        counts: dict[str, int] = {}
        for row in rows:
            key = (
                "duplicates"
                if row["state"] == UrlImport.State.SUCCEEDED and row["duplicate"]
                else row["state"]
            )
            counts[key] = counts.get(key, 0) + row["n"]
        return cls(
            waiting=counts.get(UrlImport.State.QUEUED, 0),
            running=counts.get(UrlImport.State.RUNNING, 0),
            added=counts.get(UrlImport.State.SUCCEEDED, 0),
            duplicates=counts.get("duplicates", 0),
            refused=counts.get(UrlImport.State.FAILED, 0) + counts.get(UrlImport.State.DEAD, 0),
        )

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    @property
    def unfinished(self) -> int:
        return self.waiting + self.running

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

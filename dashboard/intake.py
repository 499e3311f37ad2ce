"""Bringing images in: uploaded files, zip archives and folders become SourceImage rows, or named refusals."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import stat
import struct
import tempfile
import unicodedata
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count

from dashboard import services
from dashboard.models import Campaign, DeferredUpload, Generation, SourceImage, UrlImport
from jobs.errors import PermanentError
from jobs.imaging import decode_pixels, probe_with_thumbnail

ARCHIVE_SUFFIXES = {".zip"}
EXTENSIONS = {
    "JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp", "AVIF": "avif", "HEIF": "heic"
}  # fmt: skip
CHUNK = 1024 * 1024
UPLOAD_FIELD = "files"
# No file system allows a longer file name, so a longer one was made up by a script; Django would cut it short.
MAX_NAME_CHARS = 255
# Room for a name far longer than MAX_NAME_CHARS, so that it is refused on its own: Django's parser gives up on
# the whole request when one part's headers pass 1 KB.
MAX_PART_HEADER_BYTES = 64 * 1024
SHOWN_NAME_CHARS = 60
RENAME = "rename it and upload it again"
# A file unpacked from a zip archive stays in memory up to this size while it is checked and stored; a larger
# one is spooled to a temporary file, so unpacking holds one piece of one file at a time, not the file.
SPOOL_BYTES = 8 * 1024 * 1024
# Rows of each kind (added, duplicates, refused) an upload's results keep to show; the counts stay exact.
RESULT_ROWS = 200
# A zip's directory costs memory as it is read (a few hundred bytes per entry, before any is looked at): a
# directory larger than this many bytes per allowed member is refused unread. Real entries take about 100.
ZIP_DIRECTORY_BYTES_PER_MEMBER = 1024


@dataclass(frozen=True)
class IncomingFile:
    """One file to bring in: the name it is shown by, and its bytes in a seekable file (in memory or on disk)
    that is read a piece at a time, never whole."""

    name: str
    file: BinaryIO
    size: int
    sha256: str

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> IncomingFile:
        return cls(name, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def from_file(cls, name: str, handle: BinaryIO, limit: int) -> IncomingFile:
        """A seekable file read where it is (an upload's spool, a file on disk, a stored upload): hashed in one
        pass, and refused when it is over `limit` bytes."""
        handle.seek(0)
        sha256, size = copy_limited(handle, limit)
        handle.seek(0)
        return cls(name, handle, size, sha256)


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class Duplicate:
    """A file whose bytes the campaign already holds, under the display name it was first added with."""

    name: str
    duplicate_of: str

    def __str__(self) -> str:
        return f"{self.name}: the same picture as {self.duplicate_of}"


@dataclass
class ImportReport:
    """Each file's outcome: added, a duplicate, refused, or handed to a worker to check (`checking`)."""

    accepted: list[SourceImage] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    checking: list[DeferredUpload] = field(default_factory=list)
    # The ids of `accepted`, to tell a file added earlier in this import from one an earlier attempt added.
    accepted_ids: set[int] = field(default_factory=set, repr=False, compare=False)

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Every file's outcome as JSON-ready rows (at most `limit` of each kind) and the full counts."""
        return {
            "accepted": [{"name": s.display_name, "id": s.pk} for s in self.accepted[:limit]],
            "duplicates": [dataclasses.asdict(d) for d in self.duplicates[:limit]],
            "refused": [dataclasses.asdict(r) for r in self.refused[:limit]],
            "checking": [{"name": d.name, "id": d.pk, "kind": d.kind} for d in self.checking],
            "counts": {
                "accepted": len(self.accepted),
                "duplicates": len(self.duplicates),
                "refused": len(self.refused),
                "checking": len(self.checking),
            },
        }


def sanitize_display_name(name: str) -> str:
    """A name safe to show and to put in a ZIP: no path, no control or bidi characters, bounded length."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/")).split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in {"C"} and ch not in '<>:"|?*')
    name = name.strip().strip(".") or "image"
    stem, dot, suffix = name.rpartition(".")
    if dot and len(suffix) <= 8:
        return f"{stem[:120]}.{suffix}" if stem else name[:120]
    return name[:120]


def shown_name(name: str) -> str:
    """A refused file's name as it can be shown: control characters as their visible symbols (U+2400…),
    an over-long one cut short but keeping its extension."""
    name = "".join(chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "␡" if ord(ch) == 0x7F else ch for ch in name)
    name = "".join(ch if unicodedata.category(ch) != "Cc" else "\ufffd" for ch in name)
    if len(name) <= SHOWN_NAME_CHARS + 20:
        return name or "(no name)"
    _, dot, suffix = name.rpartition(".")
    suffix = f".{suffix}" if dot and len(suffix) <= 8 else ""
    return f"{name[:SHOWN_NAME_CHARS]}…{suffix}"


def upload_name_problem(name: str) -> str | None:
    """Why an uploaded file's name (its last path part) cannot be used, in words for the person who sent it."""
    if not name.strip():
        return "has no file name; give it one and upload it again"
    if name in {".", ".."}:
        return f"has no usable file name; {RENAME}"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return f"its name contains control characters; {RENAME}"
    if len(name) > MAX_NAME_CHARS:
        return f"its name is {len(name)} characters long, longer than the {MAX_NAME_CHARS} a file name may have; {RENAME}"
    return None


def base_name(name: str) -> str:
    """The last part of a path a client sent as a file name, with either kind of slash."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def too_large(limit: int) -> PermanentError:
    return PermanentError(
        f"is larger than the {limit // (1024 * 1024)} MB limit for one image", code="too_large"
    )


def read_limited(handle: Readable, limit: int, name: str) -> bytes:
    """Read at most `limit` bytes, refusing (instead of truncating) anything larger."""
    chunks = []
    size = 0
    while chunk := handle.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def copy_limited(handle: Readable, limit: int, sink: BinaryIO | None = None) -> tuple[str, int]:
    """Read `handle` to its end a piece at a time (into `sink` if given): its SHA-256 and size, refusing
    anything over `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    if sink is not None:
        sink.seek(0)
    return digest.hexdigest(), size


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
                incoming = IncomingFile.from_file(name, handle, limit)
            except PermanentError as error:
                refused.append(Refusal(str(path.relative_to(directory)), error.message))
                continue
            yield incoming


def iter_zip(handle: BinaryIO, archive_name: str, refused: list[Refusal]) -> Iterator[IncomingFile]:
    """Stream a zip's members, refusing unsafe ones and stopping at the caps before they are exceeded. Each
    member is unpacked once, a piece at a time, into a spool that stays in memory only when it is small."""
    member_limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    total_limit = settings.PIXELMILL_ZIP_MAX_TOTAL_BYTES
    max_members = settings.PIXELMILL_ZIP_MAX_MEMBERS
    directory_bytes = zip_directory_bytes(handle)
    if directory_bytes is not None and directory_bytes > max_members * ZIP_DIRECTORY_BYTES_PER_MEMBER:
        refused.append(Refusal(archive_name, f"lists more files than it may hold; at most {max_members}"))
        return
    try:
        handle.seek(0)
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        refused.append(Refusal(archive_name, "is not a readable zip archive"))
        return
    total = 0
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > max_members:
            refused.append(Refusal(archive_name, f"holds {len(members)} files; at most {max_members}"))
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
            with tempfile.SpooledTemporaryFile(
                max_size=SPOOL_BYTES, dir=settings.FILE_UPLOAD_TEMP_DIR
            ) as spool:
                try:
                    with archive.open(info) as member:
                        sha256, size = copy_limited(member, member_limit, spool)
                except PermanentError as error:
                    refused.append(Refusal(label, error.message))
                    continue
                except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, zlib.error) as error:
                    refused.append(Refusal(label, f"could not be read from the archive ({error})"))
                    continue
                total += size
                if total > total_limit:
                    refused.append(
                        Refusal(archive_name, "unpacks to more than the total size limit; stopped")
                    )
                    return
                yield IncomingFile(sanitize_display_name(info.filename), spool, size, sha256)


def zip_directory_bytes(handle: BinaryIO) -> int | None:
    """The size of a zip's directory as its end record (or zip64 end record) declares it, read before the
    directory is, or None when there is no end record (then it is no zip, as zipfile will say)."""
    handle.seek(0, os.SEEK_END)
    length = handle.tell()
    start = max(0, length - (22 + 0xFFFF))  # the end record, then a comment of at most 64 KB
    handle.seek(start)
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    (size,) = struct.unpack_from("<I", tail, at + 12)
    locator = at - 20
    if size == 0xFFFFFFFF and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
        handle.seek(record_at)
        record = handle.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            (size,) = struct.unpack_from("<Q", record, 40)
    return int(size)


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
    campaign: Campaign,
    incoming: IncomingFile,
    origin: str,
    *,
    generation: Generation | None = None,
    deferred_upload: DeferredUpload | None = None,
) -> SourceImage | None:
    """Validate and store one file; None when the campaign already holds these bytes. The file is decoded to
    prove it whole (a large JPEG at its draft scale) and copied to storage a piece at a time."""
    sha256 = incoming.sha256
    if SourceImage.objects.filter(campaign=campaign, sha256=sha256).exists():
        return None
    info, thumbnail_bytes = probe_with_thumbnail(incoming.file, max_pixels=settings.PIXELMILL_MAX_PIXELS)
    extension = EXTENSIONS.get(info.format, "img")
    key = f"sources/c{campaign.pk}/{sha256[:2]}/{sha256}.{extension}"
    incoming.file.seek(0)
    stored = default_storage.save(key, File(incoming.file, name=key))
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
                byte_size=incoming.size,
                origin=origin,
                generation=generation,
                deferred_upload=deferred_upload,
            )
    except IntegrityError:
        return None  # the same bytes arrived twice at once; the other request stored them


def add_image(
    campaign: Campaign,
    incoming: IncomingFile,
    origin: str,
    report: ImportReport,
    *,
    deferred_upload: DeferredUpload | None = None,
) -> None:
    """Store one file and say how it went in `report`: added, a duplicate of a named image, or refused."""
    try:
        source = store_source(campaign, incoming, origin, deferred_upload=deferred_upload)
    except PermanentError as error:
        report.refused.append(Refusal(incoming.name, error.message))
        return
    first = source or campaign.sources.filter(sha256=incoming.sha256).first()
    if source is not None or (
        # added by an earlier attempt of this very upload, which was interrupted before it could say so
        first is not None
        and deferred_upload is not None
        and first.deferred_upload_id == deferred_upload.pk
        and first.pk not in report.accepted_ids
    ):
        assert first is not None
        report.accepted.append(first)
        report.accepted_ids.add(first.pk)
        return
    report.duplicates.append(
        Duplicate(incoming.name, duplicate_of=first.display_name if first else "an earlier image")
    )


def import_images(campaign: Campaign, files: Iterable[IncomingFile], origin: str) -> ImportReport:
    report = ImportReport()
    for incoming in files:
        add_image(campaign, incoming, origin, report)
    return report


def import_uploads(campaign: Campaign, files: Iterable[Any], refused: Iterable[Refusal] = ()) -> ImportReport:
    """Import uploaded files; `refused` are the parts refused while the request was read (dashboard.upload_reader).

    Whatever is too heavy to check in a web request is stored as sent and handed to a worker (`checking`):
    every zip archive, and an image whose check would decode more than PIXELMILL_WEB_DECODE_MAX_PIXELS. The
    rest is read a piece at a time, never held whole, and a large baseline JPEG is decoded at 1/8 scale.
    """
    report = ImportReport(refused=list(refused))
    limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    for upload in files:
        raw_name = base_name(upload.name or "")
        if problem := upload_name_problem(raw_name):
            report.refused.append(Refusal(shown_name(raw_name), problem))
            continue
        name = sanitize_display_name(raw_name)
        if upload.size == 0:
            report.refused.append(Refusal(name, "is empty (0 bytes)"))
            continue
        if Path(name).suffix.lower() in ARCHIVE_SUFFIXES:
            if zipfile.is_zipfile(upload):
                report.checking.append(defer_upload(campaign, name, upload, DeferredUpload.Kind.ARCHIVE))
            else:
                report.refused.append(Refusal(name, "is not a readable zip archive"))
            continue
        try:
            incoming = IncomingFile.from_file(name, upload, limit)
            heavy = decode_pixels(upload, max_pixels=settings.PIXELMILL_MAX_PIXELS)
        except PermanentError as error:
            report.refused.append(Refusal(name, error.message))
            continue
        # A duplicate is said at once; it is never decoded.
        if (
            heavy > settings.PIXELMILL_WEB_DECODE_MAX_PIXELS
            and not campaign.sources.filter(sha256=incoming.sha256).exists()
        ):
            report.checking.append(defer_upload(campaign, name, upload, DeferredUpload.Kind.IMAGE))
            continue
        add_image(campaign, incoming, SourceImage.Origin.UPLOAD, report)
    return report


def defer_upload(campaign: Campaign, name: str, upload: Any, kind: str) -> DeferredUpload:
    """Store an uploaded file as it was sent, a piece at a time, and queue it for a worker to bring in."""
    suffix = ".zip" if kind == DeferredUpload.Kind.ARCHIVE else ".img"
    upload.seek(0)
    key = default_storage.save(f"uploads/c{campaign.pk}/{uuid.uuid4().hex}{suffix}", upload)
    return services.queue_deferred_upload(campaign, name=name, kind=kind, key=key, byte_size=upload.size)


def import_deferred(upload: DeferredUpload) -> ImportReport:
    """Bring in a stored upload, in a worker: each file of an archive, or the one large image, is added, a
    named duplicate or refused with its reason (a whole archive that cannot be read is one refusal)."""
    report = ImportReport()
    campaign = upload.campaign
    with upload.file.open("rb") as handle:
        if upload.kind == DeferredUpload.Kind.ARCHIVE:
            for incoming in iter_zip(handle, upload.name, report.refused):
                add_image(campaign, incoming, SourceImage.Origin.ZIP, report, deferred_upload=upload)
            return report
        try:
            incoming = IncomingFile.from_file(upload.name, handle, settings.PIXELMILL_MAX_UPLOAD_BYTES)
        except PermanentError as error:
            report.refused.append(Refusal(upload.name, error.message))
            return report
        add_image(campaign, incoming, SourceImage.Origin.UPLOAD, report, deferred_upload=upload)
    return report


def import_directory(campaign: Campaign, directory: Path) -> ImportReport:
    report = ImportReport()
    for incoming in iter_directory(directory, report.refused):
        add_image(campaign, incoming, SourceImage.Origin.COMMAND, report)
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

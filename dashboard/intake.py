"""Bringing images in: uploaded files, zip archives and folders become SourceImage rows, or named refusals."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.http import QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils.datastructures import MultiValueDict
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from dashboard.models import Campaign, Generation, SourceImage, UrlImport
from jobs.errors import PermanentError
from jobs.imaging import probe_with_thumbnail

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


@dataclass(frozen=True)
class IncomingFile:
    name: str
    data: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


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
    accepted: list[SourceImage] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Every file's outcome as JSON-ready rows (at most `limit` of each kind) and the full counts."""
        return {
            "accepted": [{"name": s.display_name, "id": s.pk} for s in self.accepted[:limit]],
            "duplicates": [dataclasses.asdict(d) for d in self.duplicates[:limit]],
            "refused": [dataclasses.asdict(r) for r in self.refused[:limit]],
            "counts": {
                "accepted": len(self.accepted),
                "duplicates": len(self.duplicates),
                "refused": len(self.refused),
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


def read_limited(handle: Readable, limit: int, name: str) -> bytes:
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


def header_text(value: str | None) -> tuple[str, bool]:
    """A part header's value (read as Latin-1, so every byte survives) as the UTF-8 text a browser sends, and
    whether it was UTF-8 at all."""
    raw = (value or "").encode("latin-1")
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), False


@dataclass
class UploadPart:
    """One part of a multipart body being read: a form field, a file, or a file part that is refused."""

    segment: MultipartSegment
    field_name: str
    kind: str  # "field", "file", "refused" or "skipped"
    name: str = ""
    problem: str = ""
    text: list[bytes] = field(default_factory=list)
    file: Any = None
    in_memory: int = 0  # bytes of the file that may stay in memory before it spools to disk


class UploadReader(FileUploadHandler):
    """Reads an upload's multipart body in place of Django's parser, which silently skips a file named "", "."
    or "..", or whose name is not UTF-8, and answers the whole request 400 when one name passes 1 KB. Here each
    such file is one refused row (`refused`) and the rest of the upload goes on. Django's limits on files,
    fields and field bytes still apply. Install it before anything reads request.POST."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.refused: list[Refusal] = []

    def handle_raw_input(
        self,
        input_data: Any,
        META: Any,
        content_length: int,
        boundary: bytes | str,
        encoding: str | None = None,
    ) -> tuple[QueryDict, MultiValueDict[str, UploadedFile[bytes]]]:
        self.encoding = encoding or settings.DEFAULT_CHARSET
        self.post = QueryDict(mutable=True, encoding=self.encoding)
        self.files: MultiValueDict[str, UploadedFile[bytes]] = MultiValueDict()
        self.field_bytes = self.field_count = self.file_count = 0
        self.memory_left = settings.PIXELMILL_UPLOAD_MEMORY_BYTES
        parser = PushMultipartParser(
            boundary, content_length, max_header_size=MAX_PART_HEADER_BYTES, header_charset="latin-1"
        )
        part: UploadPart | None = None
        try:
            for event in parser.parse_blocking(input_data.read, 64 * 1024):
                if isinstance(event, MultipartSegment):
                    part = self.start_part(event)
                elif part is None:
                    continue
                elif event is None:
                    self.finish_part(part)
                else:
                    self.add_to_part(part, event)
        except MultipartError as error:
            self.close_files(part)
            raise MultiPartParserError(str(error)) from error
        except BaseException:
            self.close_files(part)
            raise
        return self.post, self.files

    def start_part(self, segment: MultipartSegment) -> UploadPart:
        field_name, _ = header_text(segment.name)
        if segment.filename is None and field_name != UPLOAD_FIELD:
            self.field_count += 1
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            if limit is not None and self.field_count > limit:
                raise TooManyFieldsSent(f"The upload sent more than {limit} form fields.")
            return UploadPart(segment, field_name, "field")
        self.file_count += 1
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        if limit is not None and self.file_count > limit:
            raise TooManyFilesSent(f"The upload sent more than {limit} files.")
        if field_name != UPLOAD_FIELD:
            return UploadPart(segment, field_name, "skipped")
        name, readable = header_text(segment.filename)
        name = base_name(name)
        if not readable:
            problem = f"its name is not readable text (not UTF-8); {RENAME}"
        else:
            problem = upload_name_problem(name) or ""
        if problem:
            return UploadPart(segment, field_name, "refused", name=name, problem=problem)
        # Closed with the request, as Django closes every uploaded file, or by close_files on an error. Small
        # files stay in memory only while the request's files there stay within PIXELMILL_UPLOAD_MEMORY_BYTES.
        in_memory = min(settings.FILE_UPLOAD_MAX_MEMORY_SIZE, self.memory_left)
        spool: Any = (
            tempfile.SpooledTemporaryFile(max_size=in_memory, dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
            if in_memory > 0
            else tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
        )
        return UploadPart(segment, field_name, "file", name=name, file=spool, in_memory=in_memory)

    def add_to_part(self, part: UploadPart, chunk: bytes) -> None:
        if part.kind == "field":
            self.field_bytes += len(chunk)
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if limit is not None and self.field_bytes > limit:
                raise RequestDataTooBig("The upload's form fields hold more text than a form may send.")
            part.text.append(chunk)
        elif part.kind == "file":
            part.file.write(chunk)

    def finish_part(self, part: UploadPart) -> None:
        segment = part.segment
        if part.kind == "field":
            self.post.appendlist(part.field_name, b"".join(part.text).decode(self.encoding, "replace"))
        elif part.kind == "file":
            if segment.size <= part.in_memory:
                self.memory_left -= segment.size
            part.file.seek(0)
            upload = UploadedFile(part.file, part.name, segment.content_type, segment.size, segment.charset)
            self.files.appendlist(UPLOAD_FIELD, upload)
        elif part.kind == "refused" and (part.name or segment.size):
            # A nameless part with no bytes is how a browser sends a file input left empty: nothing was chosen.
            self.refused.append(Refusal(shown_name(part.name), part.problem))

    def close_files(self, part: UploadPart | None) -> None:
        if part is not None and part.file is not None:
            part.file.close()
        for _, uploads in self.files.lists():
            for upload in uploads:
                upload.close()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data  # never called: handle_raw_input reads the whole body

    def file_complete(self, file_size: int) -> None:
        return None


def iter_uploaded(files: Iterable[Any], refused: list[Refusal]) -> Iterator[IncomingFile]:
    """Expand uploaded files (Django UploadedFile objects); zip archives are read member by member."""
    limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    for upload in files:
        raw_name = base_name(upload.name or "")
        if problem := upload_name_problem(raw_name):
            refused.append(Refusal(shown_name(raw_name), problem))
            continue
        name = sanitize_display_name(raw_name)
        if upload.size == 0:
            refused.append(Refusal(name, "is empty (0 bytes)"))
            continue
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
    sha256 = incoming.sha256
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
            first = campaign.sources.filter(sha256=incoming.sha256).values_list("display_name", flat=True)
            report.duplicates.append(
                Duplicate(incoming.name, duplicate_of=first.first() or "an earlier image")
            )
        else:
            report.accepted.append(source)
    return report


def import_uploads(campaign: Campaign, files: Iterable[Any], refused: Iterable[Refusal] = ()) -> ImportReport:
    """Import uploaded files; `refused` are the parts refused while the request was read (UploadReader)."""
    refusals = list(refused)
    report = import_images(campaign, iter_uploaded(files, refusals), SourceImage.Origin.UPLOAD)
    report.refused = refusals + report.refused
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

"""Reading an upload's multipart body so that no file is lost: each badly named or unreadable file part is one
refused row, not a dropped file or a rejected request."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils.datastructures import MultiValueDict
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from dashboard.intake import (
    MAX_PART_HEADER_BYTES,
    RENAME,
    UPLOAD_FIELD,
    Refusal,
    base_name,
    shown_name,
    upload_name_problem,
)


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

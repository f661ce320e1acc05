"""Receiving a ``multipart/form-data`` upload as it streams in: the ``file`` part is written
straight into the request's own folder (never held whole in memory, never spooled elsewhere)
and refused with 413 as soon as it passes the size limit; the other parts are small form
fields (``model``, ``response_format``, ...)."""

import os
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, List, Optional

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from espnet.serve.errors import ApiError

MAX_FIELD_BYTES = 64 * 1024  # a form field (model, response_format, prompt, ...)
MAX_FORM_OVERHEAD = 1024 * 1024  # the body beyond the file: part headers and fields
FILE_PART = "file"


@dataclass
class Upload:
    """What a request sent: the file (``path`` in the request's folder, the client's
    ``filename`` and ``content_type``, ``size`` in bytes) and the form fields (every value of
    each, in order: ``timestamp_granularities[]`` may come twice)."""

    path: str
    filename: str
    content_type: str
    size: int
    fields: Dict[str, List[str]] = field(default_factory=dict)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the upload is larger than the server's limit of {limit / 2 ** 20:g} MB (--max-upload-mb)",
                    param=FILE_PART, code="file_too_large")


def safe_suffix(filename: str) -> str:
    """The file's extension, if it is a plain one (``.mp4``), for the stored copy's name."""
    suffix = os.path.splitext(os.path.basename(filename.replace("\\", "/")))[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


class _Receiver:
    """Callbacks of :class:`python_multipart.MultipartParser`: one part at a time."""

    def __init__(self, directory: str, max_file_bytes: int) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.fields: Dict[str, List[str]] = {}
        self.upload: Optional[Upload] = None
        self._header_name: List[bytes] = []
        self._header_value: List[bytes] = []
        self._headers: Dict[str, str] = {}
        self._name = ""
        self._value = bytearray()
        self._file: Optional[BinaryIO] = None
        self.complete = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        self._headers, self._value = {}, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.append(data[start:end])

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.append(data[start:end])

    def header_end(self) -> None:
        name = b"".join(self._header_name).decode("latin-1").strip().lower()
        self._headers[name] = b"".join(self._header_value).decode("latin-1").strip()
        self._header_name, self._header_value = [], []

    def headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get("content-disposition", ""))
        if kind != b"form-data" or b"name" not in options:
            raise ApiError(400, "a part of the multipart body has no 'Content-Disposition: form-data; name=...'",
                           code="malformed_request")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == FILE_PART:
            if self.upload is not None:
                raise ApiError(400, "send one file part, not several", param=FILE_PART, code="malformed_request")
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            path = os.path.join(self.directory, "upload" + safe_suffix(filename))
            self._file = open(path, "wb")
            self.upload = Upload(path, os.path.basename(filename.replace("\\", "/")) or "file",
                                 self._headers.get("content-type", "application/octet-stream"), 0)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            self._file.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise ApiError(400, f"the form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                               param=self._name, code="field_too_large")

    def part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        else:
            self.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))

    def end(self) -> None:
        self.complete = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_upload(request: Request, directory: str, max_file_bytes: int) -> Upload:
    """Read ``request``'s multipart body as it arrives: the ``file`` part into ``directory``.

    Raises:
        ApiError: 413 as soon as the file (or the whole body) passes the limit, or when the
            declared ``Content-Length`` already does; 400 for a body that is not multipart
            form data; 422 when there is no ``file`` part.
        starlette.requests.ClientDisconnect: the client went away.
    """
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(400, "send the request as multipart/form-data with the recording in the 'file' part",
                       code="malformed_request")
    max_body = max_file_bytes + MAX_FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise too_large(max_file_bytes)
    receiver = _Receiver(directory, max_file_bytes)
    received = 0
    try:
        parser = MultipartParser(options[b"boundary"], receiver.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise too_large(max_file_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        raise ApiError(400, f"the multipart body cannot be parsed ({err})", code="malformed_request") from err
    finally:
        receiver.close()
    if not receiver.complete:
        raise ApiError(400, "the multipart body ends before its closing boundary", code="malformed_request")
    if receiver.upload is None:
        raise ApiError(422, "the request has no 'file' part (the recording to transcribe)", param=FILE_PART,
                       code="missing_file")
    receiver.upload.fields = receiver.fields
    return receiver.upload

"""DICOMweb STOW-RS: multipart/related bodies in (parsed as they stream, parts spooled), the standard store response out."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from shared.dicom_vocabulary import DimseStatus

SUCCESS = DimseStatus.SUCCESS
PROCESSING_FAILURE = DimseStatus.PROCESSING_FAILURE


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message."""


@dataclass(frozen=True)
class StoredItem:
    """The outcome of one part: stored (with its retrieve URL) or failed (with a reason code)."""

    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str | None = None
    failure_reason: int | None = None


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type header."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"')
    raise MultipartError("Falta el parámetro boundary / missing boundary parameter")


class BodyTooLarge(MultipartError):
    """The body is larger than the configured limit (``MDD_STOW_MAX_BODY_BYTES``)."""


@dataclass
class Part:
    """One part of a multipart body as it was read: its headers and where its content went."""

    headers: dict[str, str]
    sink: BinaryIO
    path: Path | None  # the spool file, when parts are spooled
    size: int = 0
    oversize: bool = False  # past the per-part limit: counted, not kept


class PartReader:
    """An incremental multipart parser (python-multipart's) that writes each part as it arrives.

    Parts go to their own files in ``spool_dir`` (or to memory without one); past ``max_part_bytes``
    a part is only counted (``oversize``), past ``max_body_bytes`` the body is refused. Nothing but
    one chunk is ever held in memory.
    """

    def __init__(
        self, boundary: str, spool_dir: Path | None = None, max_body_bytes: int | None = None, max_part_bytes: int | None = None
    ) -> None:
        self.parts: list[Part] = []
        self._spool_dir = spool_dir
        self._max_body = max_body_bytes
        self._max_part = max_part_bytes
        self._read = 0
        self._ended = False
        self._field = b""
        self._value = b""
        self._headers: dict[str, str] = {}
        callbacks = {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_end": self._end,
        }
        self._parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> None:
        """Parse one more piece of the body; raises :class:`BodyTooLarge` or :class:`MultipartError`."""
        self._read += len(chunk)
        if self._max_body is not None and self._read > self._max_body:
            raise BodyTooLarge(f"El cuerpo excede {self._max_body} bytes / the body exceeds {self._max_body} bytes")
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MultipartError(f"{exc}") from exc

    def finish(self) -> list[Part]:
        """The parts, their files flushed and rewound; raises :class:`MultipartError` for an incomplete body."""
        if not self._ended:
            raise MultipartError("Cuerpo multipart incompleto o sin partes / incomplete multipart body, or without parts")
        for part in self.parts:
            part.sink.flush()
            part.sink.seek(0)
        return self.parts

    def close(self) -> None:
        """Close every part's sink (the spool folder's owner removes the files)."""
        for part in self.parts:
            part.sink.close()

    def _begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        if self._spool_dir is None:
            self.parts.append(Part(self._headers, io.BytesIO(), None))
            return
        path = self._spool_dir / f"part-{len(self.parts):05d}.dcm"
        self.parts.append(Part(self._headers, open(path, "w+b"), path))

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.oversize:
            return
        if self._max_part is not None and part.size > self._max_part:
            part.oversize = True
            part.sink.truncate(0)
            return
        part.sink.write(data[start:end])

    def _end(self) -> None:
        self._ended = bool(self.parts)


def split_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body held in memory into (headers, content) pairs, bytes kept exactly as sent."""
    reader = PartReader(boundary)
    reader.feed(body)
    return [(part.headers, part.sink.read()) for part in reader.finish()]


def store_response(items: list[StoredItem], study_url: str | None) -> dict:
    """The STOW-RS response in DICOM JSON: ReferencedSOPSequence and FailedSOPSequence."""
    referenced = [item for item in items if item.failure_reason is None]
    failed = [item for item in items if item.failure_reason is not None]
    response: dict = {}
    if study_url:
        response["00081190"] = {"vr": "UR", "Value": [study_url]}
    if referenced:
        response["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [item.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [item.sop_instance_uid]},
                    "00081190": {"vr": "UR", "Value": [item.retrieve_url]},
                }
                for item in referenced
            ],
        }
    if failed:
        response["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [item.sop_class_uid]} if item.sop_class_uid else {"vr": "UI"},
                    "00081155": {"vr": "UI", "Value": [item.sop_instance_uid]} if item.sop_instance_uid else {"vr": "UI"},
                    "00081197": {"vr": "US", "Value": [item.failure_reason]},
                }
                for item in failed
            ],
        }
    return response


def http_status(items: list[StoredItem]) -> int:
    """200 when every instance was stored, 202 when some failed, 409 when all failed (PS3.18)."""
    failures = sum(item.failure_reason is not None for item in items)
    if not items or failures == len(items):
        return 409
    return 202 if failures else 200

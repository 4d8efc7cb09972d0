"""ZIP uploads, the hospitals' current habit: every DICOM file inside is ingested, the rest reported.

The archive is bounded before anything is read (entry count, total uncompressed size, overall
compression ratio, entries that overlap one another), each entry is bounded while it is read (its
size and ratio), and each entry is streamed in chunks to a spool file next to the archive: an entry is
never held in memory. A nested ZIP is not opened.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from shared.settings import Settings
from services.ingest.intake import StoreOutcome

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
PREAMBLE_BYTES = 128
CHUNK_BYTES = 1024 * 1024
#: Entries smaller than this are too small to be a bomb: their compression ratio is not judged.
RATIO_FLOOR_BYTES = 1024 * 1024
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
HEAD_BYTES = PREAMBLE_BYTES + 512


class FileReport(BaseModel):
    """What happened to one file of the ZIP."""

    name: str
    status: str  # stored, duplicate, skipped, failed
    reason: str = ""
    dicom_status: int | None = None


class UploadReport(BaseModel):
    """The per-file report of a ZIP upload and its totals."""

    files: list[FileReport]
    stored: int
    duplicates: int
    skipped: int
    failed: int


@dataclass(frozen=True)
class ZipLimits:
    """What one ZIP upload may hold (``MDD_UPLOAD_*`` and ``MDD_INSTANCE_MAX_BYTES``)."""

    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int
    max_ratio: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ZipLimits:
        """The limits configured for this deployment."""
        return cls(settings.upload_max_entries, settings.instance_max_bytes, settings.upload_max_total_bytes,
                   settings.upload_max_ratio)


class UploadRefused(ValueError):
    """The whole archive is refused before any of it is ingested: an HTTP status and a reason."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


class _EntryFailed(Exception):
    """One entry cannot be ingested; the others go on."""


def _is_part10(head: bytes) -> bool:
    return len(head) > PREAMBLE_BYTES + 4 and head[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == b"DICM"


def _entries(archive: zipfile.ZipFile) -> Iterator[zipfile.ZipInfo]:
    for info in archive.infolist():
        if not info.is_dir():
            yield info


def check_archive(archive: zipfile.ZipFile, archive_bytes: int, limits: ZipLimits) -> None:
    """Refuse the archive from its central directory alone: raises :class:`UploadRefused`."""
    entries = list(_entries(archive))
    if len(entries) > limits.max_entries:
        raise UploadRefused(413, f"El ZIP tiene {len(entries)} entradas, el máximo es {limits.max_entries} / "
                                 f"the ZIP has {len(entries)} entries, at most {limits.max_entries} are accepted")
    total = sum(info.file_size for info in entries)
    if total > limits.max_total_bytes:
        raise UploadRefused(413, f"El ZIP descomprimido ocupa {total} bytes, el máximo es {limits.max_total_bytes} / "
                                 f"the ZIP uncompresses to {total} bytes, at most {limits.max_total_bytes}")
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * max(archive_bytes, 1):
        raise UploadRefused(413, f"El ZIP se comprime más de {limits.max_ratio}:1 (bomba ZIP) / the ZIP is compressed "
                                 f"more than {limits.max_ratio}:1 (ZIP bomb)")
    # Entries that share compressed data (the overlapping-entry bomb) add up to more than the archive holds.
    if sum(info.compress_size for info in entries) > archive_bytes:
        raise UploadRefused(400, "Entradas del ZIP superpuestas (bomba ZIP) / overlapping ZIP entries (ZIP bomb)")


def _spool_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: ZipLimits) -> bytes:
    """Copy one entry to ``target`` in chunks, bounded by the per-entry limit; its first bytes."""
    if info.file_size > limits.max_entry_bytes:
        raise _EntryFailed(f"La entrada ocupa {info.file_size} bytes, el máximo es {limits.max_entry_bytes} / the entry "
                           f"is {info.file_size} bytes, at most {limits.max_entry_bytes}")
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise _EntryFailed(f"Entrada comprimida más de {limits.max_ratio}:1 (bomba ZIP) / entry compressed more than "
                           f"{limits.max_ratio}:1 (ZIP bomb)")
    head = b""
    written = 0
    try:
        with archive.open(info) as source, open(target, "wb") as spool:
            while chunk := source.read(CHUNK_BYTES):
                written += len(chunk)
                if written > limits.max_entry_bytes:  # never more than declared, but the declaration is the sender's
                    raise _EntryFailed(f"La entrada excede {limits.max_entry_bytes} bytes / the entry exceeds "
                                       f"{limits.max_entry_bytes} bytes")
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                spool.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _EntryFailed(f"Entrada del ZIP dañada / corrupt ZIP entry: {exc}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a compression method zipfile lacks
        raise _EntryFailed(f"Entrada del ZIP ilegible / unreadable ZIP entry: {exc}") from exc
    return head


def _ingest_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, accept: Callable[[Path], StoreOutcome], limits: ZipLimits, spool_dir: Path
) -> FileReport:
    name = info.filename
    if PurePosixPath(name).name.upper() == "DICOMDIR":
        return FileReport(name=name, status="skipped", reason="DICOMDIR (índice del medio / media index)")
    with tempfile.TemporaryDirectory(prefix="mdd-entry-", dir=spool_dir) as folder:
        spooled = Path(folder) / "entry.dcm"
        try:
            head = _spool_entry(archive, info, spooled, limits)
        except _EntryFailed as exc:
            return FileReport(name=name, status="failed", reason=str(exc))
        if head.startswith(ZIP_SIGNATURES):
            return FileReport(name=name, status="failed",
                              reason="ZIP anidado: no se abre; suba sus archivos DICOM directamente / nested ZIP: not "
                                     "opened; upload its DICOM files directly")
        if not _is_part10(head):
            return FileReport(name=name, status="skipped", reason="No es un archivo DICOM Part 10 / not a DICOM file")
        if MEDIA_STORAGE_DIRECTORY.encode() in head:
            return FileReport(name=name, status="skipped", reason="DICOMDIR (índice del medio / media index)")
        outcome = accept(spooled)
    if outcome.ok:
        return FileReport(name=name, status="duplicate" if outcome.duplicate else "stored", dicom_status=outcome.status)
    return FileReport(name=name, status="failed", reason=outcome.message, dicom_status=outcome.status)


def ingest_zip(
    path: Path, accept: Callable[[Path], StoreOutcome], limits: ZipLimits, spool_dir: Path | None = None
) -> UploadReport:
    """Ingest every DICOM file of a ZIP (nested folders included); DICOMDIR and junk are skipped.

    Each entry is streamed to a spool file (in ``spool_dir``, by default the archive's folder) and
    handed to ``accept`` as that file. Raises ``zipfile.BadZipFile`` when the upload is not a ZIP
    archive and :class:`UploadRefused` when the archive is past ``limits``; an entry past them is
    reported as failed, with its reason.
    """
    reports: list[FileReport] = []
    with zipfile.ZipFile(path) as archive:
        check_archive(archive, path.stat().st_size, limits)
        for info in _entries(archive):
            reports.append(_ingest_entry(archive, info, accept, limits, spool_dir or path.parent))
    count = {status: sum(r.status == status for r in reports) for status in ("stored", "duplicate", "skipped", "failed")}
    return UploadReport(
        files=reports, stored=count["stored"], duplicates=count["duplicate"], skipped=count["skipped"], failed=count["failed"]
    )

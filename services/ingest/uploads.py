"""ZIP uploads, the hospitals' current habit: every DICOM file inside is ingested, the rest reported."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from services.ingest.intake import StoreOutcome

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
PREAMBLE_BYTES = 128


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


def _is_part10(data: bytes) -> bool:
    return len(data) > PREAMBLE_BYTES + 4 and data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == b"DICM"


def _entries(archive: zipfile.ZipFile) -> Iterator[zipfile.ZipInfo]:
    for info in archive.infolist():
        if not info.is_dir():
            yield info


def ingest_zip(path: Path, accept: Callable[[bytes], StoreOutcome]) -> UploadReport:
    """Ingest every DICOM file of a ZIP (nested folders included); DICOMDIR and junk are skipped.

    Raises ``zipfile.BadZipFile`` when the upload is not a ZIP archive.
    """
    reports: list[FileReport] = []
    with zipfile.ZipFile(path) as archive:
        for info in _entries(archive):
            name = info.filename
            if PurePosixPath(name).name.upper() == "DICOMDIR":
                reports.append(FileReport(name=name, status="skipped", reason="DICOMDIR (índice del medio / media index)"))
                continue
            data = archive.read(info)
            if not _is_part10(data):
                reports.append(FileReport(name=name, status="skipped", reason="No es un archivo DICOM Part 10 / not a DICOM file"))
                continue
            if MEDIA_STORAGE_DIRECTORY.encode() in data[: PREAMBLE_BYTES + 512]:
                reports.append(FileReport(name=name, status="skipped", reason="DICOMDIR (índice del medio / media index)"))
                continue
            outcome = accept(data)
            if outcome.ok:
                status = "duplicate" if outcome.duplicate else "stored"
                reports.append(FileReport(name=name, status=status, dicom_status=outcome.status))
            else:
                reports.append(FileReport(name=name, status="failed", reason=outcome.message, dicom_status=outcome.status))
    count = {status: sum(r.status == status for r in reports) for status in ("stored", "duplicate", "skipped", "failed")}
    return UploadReport(
        files=reports, stored=count["stored"], duplicates=count["duplicate"], skipped=count["skipped"], failed=count["failed"]
    )

"""What the public data-set importers share: label tables (CSV or Excel) with forgiving column names,
and the header of a DICOM image (laterality, view, and whether the model may be trained on it)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from mlkit.datasets.manifest import ManifestRow, parse_row
from mlkit.datasets.result import DatasetImportError, ImportResult
from shared.imaging.applicability import header_gates
from shared.imaging.pipeline import view_of


def column_key(name: str) -> str:
    """A column name without case, spaces, underscores or dashes (``Bi-Rads`` and ``BIRADS`` match)."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def read_table(path: Path, *, delimiter: str | None = None) -> list[dict[str, str]]:
    """The rows of a CSV (delimiter sniffed between ``,`` and ``;`` unless given) or ``.xlsx`` file,
    each a dict keyed by :func:`column_key` of its header."""
    if not path.is_file():
        raise DatasetImportError(f"{path}: no existe / not found")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        sheet = book.worksheets[0]
        values = list(sheet.iter_rows(values_only=True))
        book.close()
        if not values:
            return []
        header = [column_key(h or "") for h in values[0]]
        return [
            {header[i]: "" if v is None else str(v).strip() for i, v in enumerate(row) if i < len(header)}
            for row in values[1:]
            if any(v not in (None, "") for v in row)
        ]
    text = path.read_text(encoding="utf-8-sig")
    if delimiter is None:
        first = text.splitlines()[0] if text else ""
        delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    return [{column_key(k): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def require(rows: list[dict[str, str]], path: Path, columns: tuple[str, ...]) -> None:
    """Raise naming the file when its header lacks one of ``columns`` (given as :func:`column_key`)."""
    present = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in present]
    if rows and missing:
        raise DatasetImportError(f"{path}: faltan columnas / missing columns: {', '.join(missing)}")


@dataclass(frozen=True)
class ImageHeader:
    """What the header of one image says."""

    path: Path
    laterality: str | None
    view: str | None
    patient_id: str
    study_uid: str
    not_evaluable: tuple[str, ...]


_TAGS = ["StudyInstanceUID", "PatientID", "ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence",
         "Modality", "SOPClassUID", "PresentationIntentType", "Rows", "Columns", "PixelSpacing", "ImagerPixelSpacing",
         "NumberOfFrames", "QualityControlImage", "ImageType", "BodyPartExamined", "SeriesDescription",
         "WindowCenter", "WindowWidth", "VOILUTSequence", "ViewModifierCodeSequence"]


def read_header(path: Path) -> ImageHeader | None:
    """The header of a DICOM image; None when the file is not one."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except (InvalidDicomError, OSError, ValueError):
        return None
    if "Rows" not in ds:
        return None
    laterality, view = view_of(ds)
    return ImageHeader(
        path=path,
        laterality=laterality,
        view=view,
        patient_id=str(ds.get("PatientID", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        not_evaluable=tuple(g.value for g in header_gates(ds)),
    )


def birads_suspicion(birads: int | None) -> int | None:
    """Malignancy as data sets without pathology label it: BI-RADS 4-6 suspicious (1), 1-3 not (0), 0 unknown.

    A proxy, not a biopsy result; docs/training.md says so.
    """
    if birads is None or birads == 0:
        return None
    return 1 if birads >= 4 else 0


def image_row(
    where: str, *, study: str, patient: str, laterality: str, view: str, path: Path, source: str, **labels: object
) -> ManifestRow:
    """One manifest row for an image (``labels``: malignancy, birads, density, finding, split)."""
    return parse_row(
        {"study_id": study, "patient_id": patient, "laterality": laterality, "view": view,
         "image_path": str(path.resolve()), "source": source, **labels},
        where,
    )


def finished(result: ImportResult, root: Path) -> ImportResult:
    """``result``, or a clear error when it imported no image at all."""
    if not result.rows:
        raise DatasetImportError(
            f"{root}: ninguna imagen importada / no image imported ({len(result.problems)} problemas / problems)"
        )
    return result


__all__ = ["ImageHeader", "finished", "image_row", "birads_suspicion", "column_key", "read_header", "read_table", "require"]

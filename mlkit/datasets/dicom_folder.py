"""Carpeta de estudios DICOM + CSV de etiquetas / a folder of DICOM studies plus a labels CSV.

The labels CSV has one row per study, or per breast of a study. Column names are matched without
regard to case, spaces or underscores:

==================  ===========================================================================
StudyInstanceUID    the study (alias ``study_uid``); either this or AccessionNumber per row
AccessionNumber     the study by accession number (alias ``accession``)
laterality          ``R``/``L`` (RIGHT/LEFT, D/I); empty: the row labels both breasts
birads              BI-RADS 0-6 (``4A``-``4C`` read as 4), optional
density             ACR ``A``-``D`` or ``1``-``4``, optional
pathology           ``malignant``/``benign``/``normal`` (maligno/benigno, 1/0), optional
split               ``train``/``val``/``test``, optional
==================  ===========================================================================

Laterality and view of every image come from its tags (ImageLaterality or Laterality;
ViewPosition or ViewCodeSequence: ML, LM, XCCL... count as MLO or CC). The patient id in the
manifest is a salted SHA-256 of the PatientID, never the PatientID itself. Images without a label
row, "FOR PROCESSING" images and images without laterality or view are reported and left out.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pydicom
from pydicom.errors import InvalidDicomError

from mlkit.datasets.manifest import (
    normalize_birads,
    normalize_density,
    normalize_laterality,
    normalize_malignancy,
    normalize_split,
    parse_row,
)
from mlkit.datasets.result import DatasetImportError, ImportResult
from shared.imaging.pipeline import view_of

_ALIASES: Final[dict[str, str]] = {
    "studyinstanceuid": "study_uid",
    "studyuid": "study_uid",
    "accessionnumber": "accession",
    "accession": "accession",
    "laterality": "laterality",
    "imagelaterality": "laterality",
    "birads": "birads",
    "bi-rads": "birads",
    "density": "density",
    "breastdensity": "density",
    "pathology": "pathology",
    "malignancy": "pathology",
    "split": "split",
}
_HEADER_TAGS: Final[list[str]] = [
    "StudyInstanceUID", "AccessionNumber", "PatientID", "ImageLaterality", "Laterality",
    "FrameLaterality", "ViewPosition", "ViewCodeSequence", "PresentationIntentType", "Rows",
]


@dataclass(frozen=True)
class StudyLabels:
    """The labels of one CSV row."""

    line: int
    birads: int | None
    density: str | None
    malignancy: int | None
    split: str | None


def pseudonym(patient_id: str, salt: str = "") -> str:
    """A stable pseudonymous patient key: ``P-`` + 16 hex digits of SHA-256(salt | PatientID)."""
    digest = hashlib.sha256(f"{salt}|{patient_id}".encode()).hexdigest()
    return f"P-{digest[:16]}"


def read_labels(path: str | Path) -> dict[tuple[str, str | None], StudyLabels]:
    """Read the labels CSV into ``{(study key, laterality or None): labels}``.

    The study key is ``uid:<StudyInstanceUID>`` or ``acc:<AccessionNumber>``. Raises
    :class:`DatasetImportError` naming the line on a bad value, a missing key or a repeated row.
    """
    source = Path(path)
    if not source.is_file():
        raise DatasetImportError(f"{source}: no existe el CSV de etiquetas / labels CSV not found")
    labels: dict[tuple[str, str | None], StudyLabels] = {}
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns: dict[str, str] = {}
        for name in reader.fieldnames or []:
            key = _ALIASES.get(name.strip().lower().replace(" ", "").replace("_", ""))
            if key:
                columns[key] = name
        if "study_uid" not in columns and "accession" not in columns:
            raise DatasetImportError(
                f"{source}: falta la columna StudyInstanceUID o AccessionNumber / "
                "missing StudyInstanceUID or AccessionNumber column"
            )
        for line_no, raw in enumerate(reader, start=2):
            def cell(name: str, raw: dict[str, str] = raw) -> str:
                return (raw.get(columns[name]) or "").strip() if name in columns else ""

            uid, accession = cell("study_uid"), cell("accession")
            if not uid and not accession:
                raise DatasetImportError(
                    f"{source}:{line_no}: fila sin StudyInstanceUID ni AccessionNumber / row without a study key"
                )
            try:
                laterality = normalize_laterality(cell("laterality")) if cell("laterality") else None
                entry = StudyLabels(
                    line=line_no,
                    birads=normalize_birads(cell("birads")),
                    density=normalize_density(cell("density")),
                    malignancy=normalize_malignancy(cell("pathology")),
                    split=normalize_split(cell("split")),
                )
            except ValueError as exc:
                raise DatasetImportError(f"{source}:{line_no}: {exc}") from None
            key = (f"uid:{uid}" if uid else f"acc:{accession}", laterality)
            if key in labels:
                raise DatasetImportError(
                    f"{source}:{line_no}: estudio repetido (línea {labels[key].line}) / "
                    f"repeated study (line {labels[key].line})"
                )
            labels[key] = entry
    return labels


def _lookup(
    labels: dict[tuple[str, str | None], StudyLabels], uid: str, accession: str, laterality: str
) -> tuple[tuple[str, str | None], StudyLabels] | None:
    for study in (f"uid:{uid}", f"acc:{accession}"):
        if study.endswith(":"):
            continue
        for key in ((study, laterality), (study, None)):
            if key in labels:
                return key, labels[key]
    return None


def import_dicom_folder(src: str | Path, labels_csv: str | Path, *, salt: str = "") -> ImportResult:
    """Import every mammogram under ``src`` (any depth) that has a row in ``labels_csv``.

    ``salt`` goes into the patient pseudonym (keep it secret and the same across imports of one
    hospital). Raises :class:`DatasetImportError` when ``src`` is not a folder, the CSV is invalid or
    no labelled image is found.
    """
    root = Path(src)
    if not root.is_dir():
        raise DatasetImportError(f"{root}: no es una carpeta / not a folder")
    labels = read_labels(labels_csv)
    labels_path = Path(labels_csv).resolve()
    result = ImportResult()
    used: set[tuple[str, str | None]] = set()
    skipped_files = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.resolve() == labels_path or path.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (InvalidDicomError, OSError, ValueError):
            skipped_files += 1
            continue
        if "Rows" not in ds:
            skipped_files += 1  # not an image (structured report, presentation state...)
            continue
        if str(ds.get("PresentationIntentType", "")).upper() == "FOR PROCESSING":
            result.problems.append(f"{path}: imagen FOR PROCESSING ignorada / FOR PROCESSING image skipped")
            continue
        laterality, view = view_of(ds)
        if laterality is None or view is None:
            result.problems.append(
                f"{path}: sin lateralidad o vista estándar en las etiquetas DICOM / "
                "no laterality or standard view in the DICOM tags"
            )
            continue
        uid = str(ds.get("StudyInstanceUID", "") or "")
        accession = str(ds.get("AccessionNumber", "") or "")
        match = _lookup(labels, uid, accession, laterality)
        if match is None:
            result.problems.append(
                f"{path}: el estudio no está en el CSV de etiquetas / study not in the labels CSV"
            )
            continue
        key, entry = match
        used.add(key)
        patient = str(ds.get("PatientID", "") or "") or uid
        result.rows.append(
            parse_row(
                {
                    "study_id": uid or accession,
                    "patient_id": pseudonym(patient, salt),
                    "laterality": laterality,
                    "view": view,
                    "image_path": str(path.resolve()),
                    "malignancy": entry.malignancy,
                    "birads": entry.birads,
                    "density": entry.density,
                    "source": "dicom_csv",
                    "split": entry.split,
                },
                str(path),
            )
        )
    if skipped_files:
        result.problems.append(f"{skipped_files} archivos no son imágenes DICOM / files are not DICOM images")
    for key, entry in sorted(labels.items(), key=lambda item: item[1].line):
        if key not in used:
            side = f" {key[1]}" if key[1] else ""
            result.problems.append(
                f"línea {entry.line} ({key[0]}{side}): sin imágenes / line {entry.line}: no images found"
            )
    if not result.rows:
        raise DatasetImportError(
            f"{root}: ninguna imagen con etiquetas / no labelled images "
            f"({len(result.problems)} problemas / problems)"
        )
    return result


__all__ = ["StudyLabels", "import_dicom_folder", "pseudonym", "read_labels"]

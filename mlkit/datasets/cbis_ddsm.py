"""CBIS-DDSM: its description CSVs plus its DICOM tree -> training manifest.

CBIS-DDSM ships four CSVs (``mass_case_description_train_set.csv``,
``mass_case_description_test_set.csv``, ``calc_case_description_train_set.csv``,
``calc_case_description_test_set.csv``) with one row per abnormality and the columns
``patient_id``, ``breast_density`` (``breast density`` in the calc files), ``left or right breast``,
``image view``, ``abnormality id``, ``abnormality type``, ``assessment``, ``pathology``
(MALIGNANT, BENIGN, BENIGN_WITHOUT_CALLBACK), ``image file path``, ``cropped image file path`` and
``ROI mask file path``.

One manifest row per full mammogram: abnormalities of the same image (same patient, side and view,
also across the mass and calc files) are merged; the worst pathology wins (MALIGNANT >
BENIGN > BENIGN_WITHOUT_CALLBACK), BI-RADS is the highest assessment, density 1-4 becomes A-D,
and the split is ``train``/``test`` from the file name. A patient found in both splits goes to
``test`` as a whole, so no breast is split across them.

The CSV paths (``<folder>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm``) rarely match the
tree as downloaded; when a path is missing the image is found by its SeriesInstanceUID, then by its
folder name (the DICOM PatientID, e.g. ``Mass-Training_P_00001_LEFT_CC``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pydicom
from pydicom.errors import InvalidDicomError

from mlkit.datasets.manifest import (
    normalize_birads,
    normalize_density,
    normalize_laterality,
    parse_row,
)
from mlkit.datasets.result import DatasetImportError, ImportResult

PATHOLOGY_RANK: Final[dict[str, int]] = {"BENIGN_WITHOUT_CALLBACK": 0, "BENIGN": 1, "MALIGNANT": 2}
REQUIRED: Final[tuple[str, ...]] = ("patient id", "left or right breast", "image view", "pathology", "image file path")


def _column(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").split())


@dataclass
class _Image:
    """The abnormalities of one full mammogram, gathered across CSV rows."""

    patient_id: str
    laterality: str
    view: str
    csv_path: str
    pathologies: list[str] = field(default_factory=list)
    assessments: list[int] = field(default_factory=list)
    densities: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    splits: set[str] = field(default_factory=set)


class _DicomIndex:
    """Finds DICOM files under a root by SeriesInstanceUID or PatientID, read once on demand."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._series: dict[str, list[Path]] | None = None
        self._patients: dict[str, list[Path]] = {}

    def _build(self) -> dict[str, list[Path]]:
        series: dict[str, list[Path]] = {}
        for path in sorted(self._root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in (".dcm", ""):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True,
                                     specific_tags=["SeriesInstanceUID", "PatientID"])
            except (InvalidDicomError, OSError, ValueError):
                continue
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(path)
            self._patients.setdefault(str(ds.get("PatientID", "")), []).append(path)
        return series

    def find(self, csv_path: str) -> Path | None:
        parts = [p for p in csv_path.replace("\\", "/").split("/") if p]
        if self._series is None:
            self._series = self._build()
        if len(parts) >= 3 and len(self._series.get(parts[-2], [])) == 1:
            return self._series[parts[-2]][0]
        if parts and len(self._patients.get(parts[0], [])) == 1:
            return self._patients[parts[0]][0]
        return None


def _split_of(csv_file: Path, image_path: str) -> str | None:
    name = csv_file.name.lower()
    for word, split in (("train", "train"), ("test", "test")):
        if word in name:
            return split
    head = image_path.split("/")[0].lower()
    return "train" if "training" in head else "test" if "test" in head else None


def _read_csv(csv_file: Path, images: dict[tuple[str, str, str], _Image], problems: list[str]) -> None:
    with csv_file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {_column(c): c for c in reader.fieldnames or []}
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DatasetImportError(
                f"{csv_file}: faltan columnas de CBIS-DDSM / missing CBIS-DDSM columns: {', '.join(missing)}"
            )

        def cell(raw: dict[str, str], name: str) -> str:
            key = columns.get(name)
            return (raw.get(key) or "").strip() if key else ""

        for line_no, raw in enumerate(reader, start=2):
            where = f"{csv_file.name}:{line_no}"
            try:
                laterality = normalize_laterality(cell(raw, "left or right breast"))
                view = cell(raw, "image view").upper()
                if view not in ("CC", "MLO"):
                    raise ValueError(f"vista no soportada / unsupported view {view!r}")
                pathology = cell(raw, "pathology").upper()
                if pathology not in PATHOLOGY_RANK:
                    raise ValueError(f"patología desconocida / unknown pathology {pathology!r}")
                assessment = normalize_birads(cell(raw, "assessment"))
                density = normalize_density(cell(raw, "breast density"))
            except ValueError as exc:
                problems.append(f"{where}: {exc}; fila ignorada / row skipped")
                continue
            patient = cell(raw, "patient id")
            image_path = cell(raw, "image file path").replace("\\", "/")
            if not patient or not image_path:
                problems.append(f"{where}: falta patient_id o image file path / missing; fila ignorada / row skipped")
                continue
            key = (patient, laterality, view)
            image = images.setdefault(key, _Image(patient, laterality, view, image_path))
            image.pathologies.append(pathology)
            if assessment is not None:
                image.assessments.append(assessment)
            if density is not None:
                image.densities.append(density)
            kind = cell(raw, "abnormality type").lower()
            if kind:
                image.kinds.add("calcification" if kind.startswith("calc") else kind)
            split = _split_of(csv_file, image_path)
            if split:
                image.splits.add(split)


def import_cbis_ddsm(src: str | Path, csv_files: list[Path] | None = None) -> ImportResult:
    """Import CBIS-DDSM from ``src`` (the folder with the DICOM tree and, by default, the CSVs).

    ``csv_files`` defaults to every ``*.csv`` under ``src`` whose name contains
    ``case_description``. Raises :class:`DatasetImportError` when there is no CSV or a CSV lacks the
    CBIS-DDSM columns; rows with bad values and images not found are reported as problems.
    """
    root = Path(src)
    if not root.is_dir():
        raise DatasetImportError(f"{root}: no es una carpeta / not a folder")
    files = list(csv_files) if csv_files else sorted(
        p for p in root.rglob("*.csv") if "case_description" in p.name.lower()
    )
    if not files:
        raise DatasetImportError(
            f"{root}: no hay CSV de CBIS-DDSM (*case_description*.csv) / no CBIS-DDSM CSV files"
        )
    result = ImportResult()
    images: dict[tuple[str, str, str], _Image] = {}
    for csv_file in files:
        if not Path(csv_file).is_file():
            raise DatasetImportError(f"{csv_file}: no existe / not found")
        _read_csv(Path(csv_file), images, result.problems)

    # A patient in both splits goes to test entirely.
    patient_splits: dict[str, set[str]] = {}
    for image in images.values():
        patient_splits.setdefault(image.patient_id, set()).update(image.splits)
    for patient, splits in sorted(patient_splits.items()):
        if len(splits) > 1:
            result.problems.append(
                f"{patient}: en train y test; todo a test / in both train and test; all moved to test"
            )

    index = _DicomIndex(root)
    for (patient, laterality, view), image in images.items():
        direct = root / image.csv_path
        path = direct if direct.is_file() else index.find(image.csv_path)
        if path is None:
            result.problems.append(
                f"{patient} {laterality} {view}: no se encontró el DICOM / DICOM not found: {image.csv_path}"
            )
            continue
        if len(set(image.densities)) > 1:
            result.problems.append(
                f"{patient} {laterality} {view}: densidades distintas / conflicting densities "
                f"{sorted(set(image.densities))}; se usa la mayor / using the highest"
            )
        worst = max(image.pathologies, key=PATHOLOGY_RANK.__getitem__)
        splits = patient_splits[patient]
        result.rows.append(
            parse_row(
                {
                    "study_id": patient,
                    "patient_id": patient,
                    "laterality": laterality,
                    "view": view,
                    "image_path": str(path.resolve()),
                    "malignancy": int(worst == "MALIGNANT"),
                    "birads": max(image.assessments, default=None),
                    "density": max(image.densities, default=None),
                    "finding": "+".join(sorted(image.kinds)) or None,
                    "source": "cbis_ddsm",
                    "split": "test" if "test" in splits else next(iter(splits), None),
                },
                f"{patient} {laterality} {view}",
            )
        )
    return result


__all__ = ["PATHOLOGY_RANK", "import_cbis_ddsm"]

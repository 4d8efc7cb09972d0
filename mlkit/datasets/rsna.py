"""RSNA Screening Mammography Breast Cancer Detection (Kaggle) -> training manifest.

The data set ships as::

    train.csv      site_id, patient_id, image_id, laterality, view, age, cancer, biopsy, invasive, BIRADS,
                   implant, density, machine_id, difficult_negative_case
    train_images/<patient_id>/<image_id>.dcm

One row per image; ``cancer`` (biopsy-proven) is the malignancy label, ``BIRADS`` (0-2, empty for
many) and ``density`` (A-D) are kept when given. ``CC`` and ``MLO`` (and ``ML``/``LM``, which fill the
MLO slot) are imported; ``AT`` and other views are reported and left out. The patient is
``patient_id``; there is no split (``test.csv`` has no labels), so the trainer splits by patient.
"""

from __future__ import annotations

from pathlib import Path

from mlkit.datasets.manifest import normalize_birads, normalize_density, normalize_laterality
from mlkit.datasets.result import DatasetImportError, ImportResult
from mlkit.datasets.tables import finished, image_row, read_header, read_table, require
from shared.dicom_vocabulary import view_of as slot_of

_COLUMNS = ("patientid", "imageid", "laterality", "view", "cancer")


def import_rsna(src: str | Path) -> ImportResult:
    """Import the RSNA screening data set from the folder holding ``train.csv`` and ``train_images/``."""
    root = Path(src)
    labels = root / "train.csv"
    if not labels.is_file() or not (root / "train_images").is_dir():
        raise DatasetImportError(f"{root}: falta train.csv o train_images/ / missing train.csv or train_images/")
    table = read_table(labels)
    require(table, labels, _COLUMNS)
    result = ImportResult()
    for line, row in enumerate(table, start=2):
        where = f"train.csv:{line}"
        slot = slot_of(row["view"])
        if slot is None:
            result.problems.append(f"{where}: vista {row['view']!r} no es CC ni MLO / not CC or MLO; fila ignorada / skipped")
            continue
        path = root / "train_images" / row["patientid"] / f"{row['imageid']}.dcm"
        header = read_header(path) if path.is_file() else None
        if header is None:
            result.problems.append(f"{where}: no se encontró la imagen / image not found")
            continue
        if header.not_evaluable:
            result.problems.append(f"{where}: imagen no evaluable / image not evaluable: {', '.join(header.not_evaluable)}")
            continue
        try:
            laterality = normalize_laterality(row["laterality"])
            birads = normalize_birads(row.get("birads", ""))
            density = normalize_density(row.get("density", ""))
        except ValueError as exc:
            result.problems.append(f"{where}: {exc}; fila ignorada / row skipped")
            continue
        result.rows.append(
            image_row(
                where,
                study=row["patientid"],
                patient=row["patientid"],
                laterality=laterality,
                view=slot.value,
                path=path,
                malignancy=row["cancer"],
                birads=birads,
                density=density,
                source="rsna",
            )
        )
    return finished(result, root)


__all__ = ["import_rsna"]

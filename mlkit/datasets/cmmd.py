"""CMMD, the Chinese Mammography Database (TCIA) -> training manifest.

The data set ships as a TCIA download::

    CMMD/<ID1>/<study date-NA-NA-nnnnn>/<series>/1-1.dcm, 1-2.dcm …   (four views per patient)
    CMMD_clinicaldata_revision.xlsx   ID1, LeftRight (L/R), Age, number, abnormality
                                      (calcification / mass / both), classification (Benign / Malignant),
                                      subtype

Laterality and view come from each image's tags. A breast gets the classification of its row (ID1 and
LeftRight); a breast without a row has no label and is left out (reported). CMMD has no BI-RADS or
density; every patient is one study. There is no split: the trainer splits by patient.
"""

from __future__ import annotations

from pathlib import Path

from mlkit.datasets.manifest import normalize_laterality
from mlkit.datasets.result import DatasetImportError, ImportResult
from mlkit.datasets.tables import finished, image_row, read_header, read_table, require

CLINICAL_NAMES = ("CMMD_clinicaldata_revision.xlsx", "CMMD_clinicaldata_revision.csv")
_COLUMNS = ("id1", "leftright", "classification")


def _clinical(root: Path) -> Path:
    for name in CLINICAL_NAMES:
        for candidate in (root / name, root.parent / name):
            if candidate.is_file():
                return candidate
    raise DatasetImportError(f"{root}: falta / missing {CLINICAL_NAMES[0]}")


def import_cmmd(src: str | Path) -> ImportResult:
    """Import CMMD from the folder holding ``CMMD/`` (or ``CMMD/`` itself) and the clinical data file."""
    root = Path(src)
    tree = root / "CMMD" if (root / "CMMD").is_dir() else root
    clinical = _clinical(root)
    table = read_table(clinical)
    require(table, clinical, _COLUMNS)
    labels: dict[tuple[str, str], tuple[int, str]] = {}
    result = ImportResult()
    for line, row in enumerate(table, start=2):
        try:
            key = (row["id1"], normalize_laterality(row["leftright"]))
        except ValueError as exc:
            result.problems.append(f"{clinical.name}:{line}: {exc}")
            continue
        kind = row["classification"].strip().lower()
        if kind not in ("benign", "malignant"):
            result.problems.append(f"{clinical.name}:{line}: clasificación desconocida / unknown classification {kind!r}")
            continue
        labels[key] = (int(kind == "malignant"), row.get("abnormality", ""))
    unlabelled = 0
    for patient_dir in sorted(p for p in tree.iterdir() if p.is_dir()):
        for path in sorted(patient_dir.rglob("*.dcm")):
            header = read_header(path)
            if header is None or header.laterality is None or header.view is None:
                result.problems.append(f"{path.relative_to(tree)}: sin lateralidad o vista / no laterality or view")
                continue
            if header.not_evaluable:
                result.problems.append(f"{path.relative_to(tree)}: no evaluable: {', '.join(header.not_evaluable)}")
                continue
            label = labels.get((patient_dir.name, header.laterality))
            if label is None:
                unlabelled += 1
                continue
            malignancy, abnormality = label
            result.rows.append(
                image_row(
                    str(path),
                    study=patient_dir.name,
                    patient=patient_dir.name,
                    laterality=header.laterality,
                    view=header.view,
                    path=path,
                    malignancy=malignancy,
                    finding=abnormality or None,
                    source="cmmd",
                )
            )
    if unlabelled:
        result.problems.append(f"{unlabelled} imágenes de mamas sin fila clínica / images of breasts without a clinical row")
    return finished(result, root)


__all__ = ["CLINICAL_NAMES", "import_cmmd"]

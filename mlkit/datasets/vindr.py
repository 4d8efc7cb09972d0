"""VinDr-Mammo (PhysioNet) -> training manifest.

The data set ships as::

    images/<study_id>/<image_id>.dicom
    breast-level_annotations.csv   study_id, series_id, image_id, laterality, view_position, height, width,
                                   breast_birads ("BI-RADS 1" … "BI-RADS 5"), breast_density ("DENSITY A" …
                                   "DENSITY D"), split ("training" / "test")
    finding_annotations.csv        (boxes; not needed here)
    metadata.csv

One row per image of ``breast-level_annotations.csv``. VinDr-Mammo has no pathology: malignancy is the
BI-RADS suspicion proxy (4-5 → 1, 1-3 → 0; :func:`mlkit.datasets.tables.birads_suspicion`). Each study is
one patient (the data set gives no patient key). Its ``training`` rows keep ``split=train`` and validation
is carved from them by patient; ``test`` stays ``test``.
"""

from __future__ import annotations

from pathlib import Path

from mlkit.datasets.manifest import normalize_birads, normalize_density, normalize_laterality
from mlkit.datasets.result import DatasetImportError, ImportResult
from mlkit.datasets.tables import birads_suspicion, finished, image_row, read_header, read_table, require

LABELS_CSV = "breast-level_annotations.csv"
_COLUMNS = ("studyid", "imageid", "laterality", "viewposition", "breastbirads", "breastdensity", "split")


def import_vindr(src: str | Path) -> ImportResult:
    """Import VinDr-Mammo from its root folder (the one holding ``images/`` and the CSVs)."""
    root = Path(src)
    labels = root / LABELS_CSV
    if not labels.is_file():
        raise DatasetImportError(f"{root}: falta / missing {LABELS_CSV}")
    table = read_table(labels)
    require(table, labels, _COLUMNS)
    result = ImportResult()
    for line, row in enumerate(table, start=2):
        where = f"{LABELS_CSV}:{line}"
        path = root / "images" / row["studyid"] / f"{row['imageid']}.dicom"
        header = read_header(path) if path.is_file() else None
        if header is None:
            result.problems.append(f"{where}: no se encontró la imagen / image not found: {path.relative_to(root)}")
            continue
        if header.not_evaluable:
            result.problems.append(f"{where}: imagen no evaluable / image not evaluable: {', '.join(header.not_evaluable)}")
            continue
        view = row["viewposition"].upper()
        if view not in ("CC", "MLO"):
            result.problems.append(f"{where}: vista no estándar / non-standard view {view!r}; fila ignorada / row skipped")
            continue
        try:
            birads = normalize_birads(row["breastbirads"])
            density = normalize_density(row["breastdensity"].upper().removeprefix("DENSITY").strip())
            laterality = normalize_laterality(row["laterality"])
        except ValueError as exc:
            result.problems.append(f"{where}: {exc}; fila ignorada / row skipped")
            continue
        result.rows.append(
            image_row(
                where,
                study=row["studyid"],
                patient=row["studyid"],
                laterality=laterality,
                view=view,
                path=path,
                malignancy=birads_suspicion(birads),
                birads=birads,
                density=density,
                source="vindr_mammo",
                split="test" if row["split"].lower().startswith("test") else "train",
            )
        )
    return finished(result, root)


__all__ = ["LABELS_CSV", "import_vindr"]

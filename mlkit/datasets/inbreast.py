"""INbreast -> training manifest.

The data set ships as::

    INbreast Release 1.0/AllDICOMs/<File Name>_<patient hash>_MG_<R|L>_<CC|ML>_ANON.dcm
    INbreast Release 1.0/INbreast.csv    (semicolon-separated) Patient ID; Patient age; Laterality; View;
                                         Acquisition date; File Name; ACR; Bi-Rads   (Bi-Rads 1-6, 4a/4b/4c)

Rows are matched to images by File Name (the first part of the DICOM file name). ``ML`` views fill the
MLO slot. The patient is the hash in the file name (the CSV's Patient ID column is removed in the
release). INbreast has no pathology in its CSV: malignancy is the BI-RADS suspicion proxy (4-6 → 1,
1-3 → 0). ACR 1-4 becomes density A-D. There is no split.
"""

from __future__ import annotations

from pathlib import Path

from mlkit.datasets.manifest import normalize_birads, normalize_density, normalize_laterality
from mlkit.datasets.result import DatasetImportError, ImportResult
from mlkit.datasets.tables import birads_suspicion, finished, image_row, read_header, read_table, require

_COLUMNS = ("laterality", "view", "filename", "acr", "birads")


def _release(root: Path) -> Path:
    for candidate in (root, root / "INbreast Release 1.0"):
        if (candidate / "INbreast.csv").is_file() and (candidate / "AllDICOMs").is_dir():
            return candidate
    raise DatasetImportError(f"{root}: falta INbreast.csv o AllDICOMs / missing INbreast.csv or AllDICOMs")


def import_inbreast(src: str | Path) -> ImportResult:
    """Import INbreast from its release folder (or the folder above it)."""
    release = _release(Path(src))
    labels = release / "INbreast.csv"
    table = read_table(labels, delimiter=";")
    require(table, labels, _COLUMNS)
    files: dict[str, Path] = {p.name.split("_")[0]: p for p in (release / "AllDICOMs").glob("*.dcm")}
    result = ImportResult()
    for line, row in enumerate(table, start=2):
        where = f"INbreast.csv:{line}"
        path = files.get(row["filename"].strip())
        if path is None:
            result.problems.append(f"{where}: no hay DICOM para / no DICOM for File Name {row['filename']!r}")
            continue
        header = read_header(path)
        if header is None or header.not_evaluable:
            result.problems.append(f"{where}: imagen no evaluable / image not evaluable: {path.name}")
            continue
        view = row["view"].strip().upper()
        view = "MLO" if view in ("ML", "MLO") else view
        try:
            birads = normalize_birads(row["birads"])
            density = normalize_density(row["acr"])
            laterality = normalize_laterality(row["laterality"])
        except ValueError as exc:
            result.problems.append(f"{where}: {exc}; fila ignorada / row skipped")
            continue
        if view not in ("CC", "MLO"):
            result.problems.append(f"{where}: vista no estándar / non-standard view {view!r}")
            continue
        parts = path.stem.split("_")
        patient = parts[1] if len(parts) > 1 else row["filename"]
        result.rows.append(
            image_row(
                where,
                study=patient,
                patient=patient,
                laterality=laterality,
                view=view,
                path=path,
                malignancy=birads_suspicion(birads),
                birads=birads,
                density=density,
                source="inbreast",
            )
        )
    return finished(result, release)


__all__ = ["import_inbreast"]

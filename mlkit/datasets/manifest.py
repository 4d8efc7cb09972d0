"""Manifiesto de entrenamiento / the training manifest.

One row per breast-view image (one mammogram: one laterality, one view). The model works per
breast (CC + MLO of the same breast), so :func:`group_breasts` pairs rows that share
``study_id`` and ``laterality`` into :class:`BreastRecord` objects.

Columns (CSV header, JSON Lines keys), in this order (:data:`MANIFEST_COLUMNS`):

=============  ==============================================================================
study_id       study identifier (StudyInstanceUID, accession, DDSM case name...), required
patient_id     pseudonymous patient key, required (never a real name or hospital record number)
laterality     ``R`` or ``L`` (also accepts RIGHT/LEFT, any case)
view           ``CC`` or ``MLO`` (ML, LM, XCCL... are mapped by the importers)
image_path     DICOM (.dcm or no suffix), DDSM ``.LJPEG`` or preprocessed ``.npy`` file. Relative
               paths are relative to the manifest's folder.
malignancy     ``1`` malignant, ``0`` benign or normal, empty when unknown
birads         BI-RADS category 0-6 (``4A/4B/4C`` read as 4), empty when unknown
density        ACR density ``A``-``D`` (``1``-``4`` read as A-D), empty when unknown
finding        free text: ``mass``, ``calcification``, ``mass+calcification``... empty when none
source         ``synthetic``, ``dicom_csv``, ``cbis_ddsm``, ``ddsm``, ``vindr_mammo``, ``cmmd``, ``inbreast``
               or ``rsna``
split          ``train``, ``val`` or ``test``; empty when the trainer should split
=============  ==============================================================================

Files ending in ``.csv`` are CSV; ``.jsonl``/``.ndjson`` are JSON Lines (one object per line).
Every error names the file and line and is written in Spanish, then English.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

Laterality = Literal["R", "L"]
View = Literal["CC", "MLO"]
Density = Literal["A", "B", "C", "D"]
Source = Literal["synthetic", "dicom_csv", "cbis_ddsm", "ddsm", "vindr_mammo", "cmmd", "inbreast", "rsna"]
Split = Literal["train", "val", "test"]
ImageFormat = Literal["dicom", "ljpeg", "npy"]

MANIFEST_COLUMNS: Final[tuple[str, ...]] = (
    "study_id",
    "patient_id",
    "laterality",
    "view",
    "image_path",
    "malignancy",
    "birads",
    "density",
    "finding",
    "source",
    "split",
)
REQUIRED_COLUMNS: Final[tuple[str, ...]] = ("study_id", "patient_id", "laterality", "view", "image_path", "source")
SOURCES: Final[tuple[str, ...]] = get_args(Source)
DENSITIES: Final[tuple[str, ...]] = ("A", "B", "C", "D")

_LATERALITY_ALIASES: Final[dict[str, str]] = {"R": "R", "RIGHT": "R", "D": "R", "DERECHA": "R",
                                              "L": "L", "LEFT": "L", "I": "L", "IZQUIERDA": "L"}
_SPLIT_ALIASES: Final[dict[str, str]] = {"train": "train", "training": "train", "val": "val",
                                         "valid": "val", "validation": "val", "test": "test"}
_TRUE: Final[frozenset[str]] = frozenset({"1", "true", "yes", "si", "sí", "malignant", "maligno"})
_FALSE: Final[frozenset[str]] = frozenset({"0", "false", "no", "benign", "benigno", "normal"})


class ManifestError(ValueError):
    """A manifest that cannot be read or written; the message is Spanish / English."""


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def normalize_laterality(value: Any) -> str:
    """``R``/``L`` from R, L, RIGHT, LEFT, DERECHA, IZQUIERDA (any case); ValueError otherwise."""
    key = str(value or "").strip().upper()
    if key not in _LATERALITY_ALIASES:
        raise ValueError(f"lateralidad inválida / invalid laterality {value!r} (R o/or L)")
    return _LATERALITY_ALIASES[key]


def normalize_malignancy(value: Any) -> int | None:
    """1 (malignant), 0 (benign or normal) or None (empty); accepts words in Spanish and English."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return int(value)
    key = str(value).strip().lower()
    if key in ("1", "1.0") or key in _TRUE:
        return 1
    if key in ("0", "0.0") or key in _FALSE:
        return 0
    raise ValueError(f"malignidad inválida / invalid malignancy {value!r} (0, 1 o vacío / or empty)")


def normalize_birads(value: Any) -> int | None:
    """BI-RADS 0-6 (``4A``/``4B``/``4C`` count as 4, a ``BI-RADS`` prefix is ignored), None if empty."""
    if _blank(value):
        return None
    key = str(value).strip().upper().removeprefix("BI-RADS").removeprefix("BIRADS").strip()
    key = key.removesuffix(".0")
    if len(key) == 2 and key[0] == "4" and key[1] in "ABC":
        key = "4"
    if key not in {str(k) for k in range(7)}:
        raise ValueError(f"BI-RADS inválido / invalid BI-RADS {value!r} (0-6)")
    return int(key)


def normalize_density(value: Any) -> str | None:
    """ACR density ``A``-``D`` (``1``-``4`` are mapped to A-D), None if empty."""
    if _blank(value):
        return None
    key = str(value).strip().upper()
    key = key.removesuffix(".0")
    if key in ("1", "2", "3", "4"):
        return DENSITIES[int(key) - 1]
    if key not in DENSITIES:
        raise ValueError(f"densidad inválida / invalid density {value!r} (A-D o/or 1-4)")
    return key


def normalize_split(value: Any) -> str | None:
    """``train``/``val``/``test`` (training, validation... accepted), None if empty."""
    if _blank(value):
        return None
    key = str(value).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"partición inválida / invalid split {value!r} (train, val, test)")
    return _SPLIT_ALIASES[key]


class ManifestRow(BaseModel):
    """One breast-view image with its labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_id: str
    patient_id: str
    laterality: Laterality
    view: View
    image_path: str
    malignancy: int | None = None
    birads: int | None = None
    density: Density | None = None
    finding: str | None = None
    source: Source
    split: Split | None = None

    @field_validator("study_id", "patient_id", "image_path", mode="before")
    @classmethod
    def _required_text(cls, value: Any) -> Any:
        if _blank(value):
            raise ValueError("vacío / empty")
        return str(value).strip()

    @field_validator("laterality", mode="before")
    @classmethod
    def _laterality(cls, value: Any) -> Any:
        return normalize_laterality(value)

    @field_validator("view", mode="before")
    @classmethod
    def _view(cls, value: Any) -> Any:
        key = str(value or "").strip().upper()
        if key not in ("CC", "MLO"):
            raise ValueError(f"vista inválida / invalid view {value!r} (CC o/or MLO)")
        return key

    @field_validator("malignancy", mode="before")
    @classmethod
    def _malignancy(cls, value: Any) -> Any:
        return normalize_malignancy(value)

    @field_validator("birads", mode="before")
    @classmethod
    def _birads(cls, value: Any) -> Any:
        return normalize_birads(value)

    @field_validator("density", mode="before")
    @classmethod
    def _density(cls, value: Any) -> Any:
        return normalize_density(value)

    @field_validator("finding", mode="before")
    @classmethod
    def _finding(cls, value: Any) -> Any:
        return None if _blank(value) else str(value).strip()

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        key = str(value or "").strip().lower().replace("-", "_")
        if key not in SOURCES:
            raise ValueError(f"fuente inválida / invalid source {value!r} ({', '.join(SOURCES)})")
        return key

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return normalize_split(value)

    @property
    def image_format(self) -> ImageFormat:
        """``ljpeg`` for DDSM files, ``npy`` for preprocessed arrays, otherwise ``dicom``."""
        suffix = Path(self.image_path).suffix.lower()
        if suffix == ".ljpeg":
            return "ljpeg"
        if suffix == ".npy":
            return "npy"
        return "dicom"

    @property
    def breast_key(self) -> tuple[str, str]:
        """``(study_id, laterality)``: the rows of one breast share it."""
        return (self.study_id, self.laterality)

    def resolved_path(self, base: str | Path) -> Path:
        """The image path, joined to ``base`` (the manifest's folder) when relative."""
        path = Path(self.image_path)
        return path if path.is_absolute() else Path(base) / path

    def to_record(self) -> dict[str, str]:
        """The row as CSV cells (empty string for missing values)."""
        data = self.model_dump()
        return {k: "" if data[k] is None else str(data[k]) for k in MANIFEST_COLUMNS}


@dataclass(frozen=True)
class BreastRecord:
    """The images of one breast (what the two-view model consumes) with breast-level labels.

    Labels combine the views: malignancy and BI-RADS take the worst known value, density the
    first known one. ``cc``/``mlo`` is ``None`` when the view is missing.
    """

    study_id: str
    patient_id: str
    laterality: Laterality
    cc: ManifestRow | None
    mlo: ManifestRow | None
    malignancy: int | None
    birads: int | None
    density: Density | None
    source: Source
    split: Split | None


def _format_of(path: Path) -> Literal["csv", "jsonl"]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ManifestError(
        f"{path}: extensión no soportada {suffix!r}, use .csv o .jsonl / "
        f"unsupported extension {suffix!r}, use .csv or .jsonl"
    )


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "fila / row"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "falta / missing"
        elif item["type"] == "extra_forbidden":
            message = "columna desconocida / unknown column"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def parse_row(data: dict[str, Any], where: str = "") -> ManifestRow:
    """Validate one row (a dict of cells); raise :class:`ManifestError` naming ``where``."""
    try:
        return ManifestRow.model_validate(data)
    except ValidationError as exc:
        prefix = f"{where}: " if where else ""
        raise ManifestError(f"{prefix}fila inválida / invalid row: {_explain(exc)}") from None


def _portable(path: str, base: Path) -> str:
    """Write ``path`` relative to ``base`` when it lies inside it, as a POSIX path."""
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            return candidate.as_posix()
    return candidate.as_posix()


def check_unique(rows: Sequence[ManifestRow]) -> None:
    """Raise :class:`ManifestError` when two rows point at the same image."""
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        if row.image_path in seen:
            raise ManifestError(
                f"imagen repetida en las filas {seen[row.image_path]} y {index} / "
                f"image repeated in rows {seen[row.image_path]} and {index}: {row.image_path}"
            )
        seen[row.image_path] = index


def write_manifest(rows: Iterable[ManifestRow], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` (CSV or JSON Lines by extension), atomically.

    Absolute image paths inside the manifest's folder are written relative to it, so the folder
    can be moved as a whole. Parent folders are created.
    """
    target = Path(path)
    kind = _format_of(target)
    items = list(rows)
    check_unique(items)
    target.parent.mkdir(parents=True, exist_ok=True)
    base = target.parent.resolve()
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        if kind == "csv":
            writer = csv.DictWriter(handle, fieldnames=list(MANIFEST_COLUMNS))
            writer.writeheader()
            for row in items:
                record = row.to_record()
                record["image_path"] = _portable(row.image_path, base)
                writer.writerow(record)
        else:
            for row in items:
                data = row.model_dump()
                data["image_path"] = _portable(row.image_path, base)
                handle.write(json.dumps(data, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target


def _read_csv(path: Path) -> list[ManifestRow]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"{path}: faltan columnas / missing columns: {', '.join(missing)}")
        unknown = [c for c in header if c not in MANIFEST_COLUMNS]
        if unknown:
            raise ManifestError(f"{path}: columnas desconocidas / unknown columns: {', '.join(unknown)}")
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            if None in raw:
                raise ManifestError(f"{path}:{line_no}: demasiadas celdas / too many cells")
            cells = {k.strip(): v for k, v in raw.items() if k is not None}
            rows.append(parse_row(cells, f"{path}:{line_no}"))
    return rows


def _read_jsonl(path: Path) -> list[ManifestRow]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{line_no}: JSON inválido / invalid JSON: {exc.msg}") from None
            if not isinstance(data, dict):
                raise ManifestError(f"{path}:{line_no}: se esperaba un objeto / expected an object")
            rows.append(parse_row(data, f"{path}:{line_no}"))
    return rows


def read_manifest(path: str | Path, *, resolve: bool = True) -> list[ManifestRow]:
    """Read and validate a manifest (CSV or JSON Lines by extension).

    With ``resolve`` (the default) relative image paths are turned into absolute paths against
    the manifest's folder, so callers can open ``row.image_path`` directly. Raises
    :class:`ManifestError` on the first bad line, and when two rows name the same image.
    """
    source = Path(path)
    kind = _format_of(source)
    if not source.is_file():
        raise ManifestError(f"{source}: no existe el manifiesto / manifest not found")
    rows = _read_csv(source) if kind == "csv" else _read_jsonl(source)
    if resolve:
        base = source.parent.resolve()
        rows = [r.model_copy(update={"image_path": str(r.resolved_path(base))}) for r in rows]
    check_unique(rows)
    return rows


def _worst(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def group_breasts(rows: Iterable[ManifestRow]) -> list[BreastRecord]:
    """Pair the CC and MLO rows of each breast (same ``study_id`` and ``laterality``).

    Order follows the first appearance of each breast. When a breast has several images of one
    view, the first one is used. Raises :class:`ManifestError` if the rows of one breast disagree
    on patient, source or split.
    """
    groups: dict[tuple[str, str], list[ManifestRow]] = {}
    for row in rows:
        groups.setdefault(row.breast_key, []).append(row)
    breasts = []
    for (study_id, laterality), items in groups.items():
        for attr in ("patient_id", "source", "split"):
            values = {getattr(r, attr) for r in items}
            if len(values) > 1:
                raise ManifestError(
                    f"mama {study_id} {laterality}: {attr} distinto entre vistas / "
                    f"breast {study_id} {laterality}: {attr} differs between views: {sorted(map(str, values))}"
                )
        cc = next((r for r in items if r.view == "CC"), None)
        mlo = next((r for r in items if r.view == "MLO"), None)
        first = items[0]
        breasts.append(
            BreastRecord(
                study_id=study_id,
                patient_id=first.patient_id,
                laterality=first.laterality,
                cc=cc,
                mlo=mlo,
                malignancy=_worst(r.malignancy for r in items),
                birads=_worst(r.birads for r in items),
                density=next((r.density for r in items if r.density is not None), None),
                source=first.source,
                split=first.split,
            )
        )
    return breasts


__all__ = [
    "DENSITIES",
    "MANIFEST_COLUMNS",
    "REQUIRED_COLUMNS",
    "SOURCES",
    "BreastRecord",
    "ManifestError",
    "ManifestRow",
    "group_breasts",
    "normalize_birads",
    "normalize_density",
    "normalize_laterality",
    "normalize_malignancy",
    "normalize_split",
    "parse_row",
    "read_manifest",
    "write_manifest",
]

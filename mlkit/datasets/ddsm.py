"""DDSM (Digital Database for Screening Mammography): ``.ics``, ``.OVERLAY`` and ``.LJPEG``.

A DDSM case folder holds one ``.ics`` header (e.g. ``A-1465-1.ics``), one image per view
(``A_1465_1.LEFT_CC.LJPEG``...) and one ``.OVERLAY`` per view with marked abnormalities.
The ``.ics`` looks like::

    ics_version 1.0
    filename A-1465-1
    PATIENT_AGE 62
    DENSITY 3
    DIGITIZER LUMISYS LASER
    SEQUENCE
    LEFT_CC LINES 4696 PIXELS_PER_LINE 3024 BITS_PER_PIXEL 12 RESOLUTION 50 OVERLAY
    RIGHT_CC LINES 4624 PIXELS_PER_LINE 3056 BITS_PER_PIXEL 12 RESOLUTION 50 NON_OVERLAY

and an ``.OVERLAY`` has, per abnormality, ``LESION_TYPE``, ``ASSESSMENT`` (BI-RADS),
``SUBTLETY`` and ``PATHOLOGY`` lines, then the outline chain codes.

Labels given to each image: malignancy 1 when an abnormality of the view is MALIGNANT, 0 when
they are all benign or the view has none; BI-RADS is the worst ASSESSMENT of the view (1 for the
views of a case without any overlay: DDSM's normal cases); density comes from the ``.ics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from pydantic import BaseModel, Field
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mlkit.datasets.lossless_jpeg import LosslessJpegError, decode_lossless_jpeg
from mlkit.datasets.manifest import normalize_density, parse_row
from mlkit.datasets.result import DatasetImportError, ImportResult
from shared.synth import MG_FOR_PRESENTATION

VIEWS: Final[dict[str, tuple[str, str]]] = {
    "LEFT_CC": ("L", "CC"),
    "LEFT_MLO": ("L", "MLO"),
    "RIGHT_CC": ("R", "CC"),
    "RIGHT_MLO": ("R", "MLO"),
}
#: PATHOLOGY values, from least to most severe.
PATHOLOGY_RANK: Final[dict[str, int]] = {
    "UNPROVEN": -1,
    "BENIGN_WITHOUT_CALLBACK": 0,
    "BENIGN": 1,
    "MALIGNANT": 2,
}


class IcsView(BaseModel):
    """One line of the ``SEQUENCE`` block: the geometry of one scanned film."""

    name: str
    lines: int
    pixels_per_line: int
    bits_per_pixel: int | None = None
    resolution_um: float | None = None
    overlay: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the image."""
        return (self.lines, self.pixels_per_line)


class IcsInfo(BaseModel):
    """A parsed DDSM ``.ics`` header."""

    filename: str
    density: str | None = None
    density_raw: str | None = None
    patient_age: int | None = None
    digitizer: str | None = None
    date_of_study: str | None = None
    views: dict[str, IcsView] = Field(default_factory=dict)

    @property
    def case_id(self) -> str:
        """The case without the trailing film set number: ``A-1465-1`` -> ``A-1465``."""
        parts = self.filename.split("-")
        return "-".join(parts[:-1]) if len(parts) >= 3 else self.filename


class Abnormality(BaseModel):
    """One abnormality of an ``.OVERLAY`` file."""

    lesion_types: list[str] = Field(default_factory=list)
    assessment: int | None = None
    subtlety: int | None = None
    pathology: str | None = None


def _int(token: str) -> int | None:
    try:
        return int(float(token))
    except ValueError:
        return None


def parse_ics(source: str | Path) -> IcsInfo:
    """Parse an ``.ics`` file (path) or its text; raise :class:`DatasetImportError` when unusable."""
    text = source if isinstance(source, str) and "\n" in source else Path(source).read_text(errors="replace")
    info: dict[str, object] = {}
    views: dict[str, IcsView] = {}
    for raw in text.splitlines():
        tokens = raw.split()
        if not tokens:
            continue
        key = tokens[0].upper()
        if key in VIEWS:
            fields = {t.upper(): tokens[i + 1] for i, t in enumerate(tokens[1:-1], start=1)}
            lines, ppl = _int(fields.get("LINES", "")), _int(fields.get("PIXELS_PER_LINE", ""))
            if not lines or not ppl:
                raise DatasetImportError(
                    f"{key}: faltan LINES/PIXELS_PER_LINE en el .ics / missing LINES/PIXELS_PER_LINE in the .ics"
                )
            bits = _int(fields.get("BITS_PER_PIXEL", ""))
            resolution = _int(fields.get("RESOLUTION", ""))
            views[key] = IcsView(
                name=key,
                lines=lines,
                pixels_per_line=ppl,
                bits_per_pixel=bits,
                resolution_um=float(resolution) if resolution else None,
                overlay=any(t.upper() == "OVERLAY" for t in tokens[1:]),
            )
        elif key == "FILENAME" and len(tokens) > 1:
            info["filename"] = tokens[1]
        elif key == "DENSITY" and len(tokens) > 1:
            info["density_raw"] = tokens[1]
            try:
                info["density"] = normalize_density(tokens[1])
            except ValueError:
                info["density"] = None
        elif key == "PATIENT_AGE" and len(tokens) > 1:
            info["patient_age"] = _int(tokens[1])
        elif key == "DIGITIZER":
            info["digitizer"] = " ".join(tokens[1:]) or None
        elif key == "DATE_OF_STUDY":
            info["date_of_study"] = " ".join(tokens[1:]) or None
    if "filename" not in info:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
            info["filename"] = Path(source).stem
        else:
            raise DatasetImportError("el .ics no tiene 'filename' / the .ics has no 'filename'")
    return IcsInfo(views=views, **info)  # type: ignore[arg-type]


def parse_overlay(source: str | Path) -> list[Abnormality]:
    """Parse an ``.OVERLAY`` file (path) or its text into its abnormalities."""
    text = source if isinstance(source, str) and "\n" in source else Path(source).read_text(errors="replace")
    found: list[Abnormality] = []
    current: Abnormality | None = None
    for raw in text.splitlines():
        tokens = raw.split()
        if not tokens:
            continue
        key = tokens[0].upper()
        if key == "ABNORMALITY":
            current = Abnormality()
            found.append(current)
            continue
        if current is None:
            continue
        if key == "LESION_TYPE" and len(tokens) > 1:
            current.lesion_types.append(tokens[1].upper())
        elif key == "ASSESSMENT" and len(tokens) > 1:
            current.assessment = _int(tokens[1])
        elif key == "SUBTLETY" and len(tokens) > 1:
            current.subtlety = _int(tokens[1])
        elif key == "PATHOLOGY" and len(tokens) > 1:
            current.pathology = tokens[1].upper()
    return found


def _norm_stem(name: str) -> str:
    return name.replace("-", "_").upper()


def find_ics(image_path: str | Path) -> Path | None:
    """The ``.ics`` of the case an image belongs to (same folder), or None."""
    path = Path(image_path)
    candidates = sorted(path.parent.glob("*.ics")) + sorted(path.parent.glob("*.ICS"))
    if not candidates:
        return None
    stem = _norm_stem(path.name.split(".")[0])
    for candidate in candidates:
        if _norm_stem(candidate.stem) == stem:
            return candidate
    return candidates[0] if len(candidates) == 1 else None


def view_name_of(image_path: str | Path) -> str | None:
    """``LEFT_CC``... from a DDSM file name such as ``A_1465_1.LEFT_CC.LJPEG``."""
    parts = Path(image_path).name.split(".")
    if len(parts) >= 3 and parts[-2].upper() in VIEWS:
        return parts[-2].upper()
    return None


def read_ljpeg(path: str | Path) -> np.ndarray:
    """Decode a DDSM ``.LJPEG`` file into a ``uint16`` array (rows x columns), raw scanner values.

    The image size comes from the case's ``.ics`` (same folder) when there is one: some DDSM files
    carry width and height swapped in their JPEG header, and their pixel stream is then reshaped to
    the ``.ics`` geometry; a header with 0 lines takes the ``.ics`` line count. Raises
    :class:`~mlkit.datasets.lossless_jpeg.LosslessJpegError` when the file cannot be read
    or disagrees with the ``.ics``.
    """
    source = Path(path)
    geometry: IcsView | None = None
    ics_path = find_ics(source)
    view = view_name_of(source)
    if ics_path is not None and view is not None:
        geometry = parse_ics(ics_path).views.get(view)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise LosslessJpegError(f"{source}: no se puede leer / cannot read: {exc.strerror}") from None
    try:
        image = decode_lossless_jpeg(data, rows=geometry.lines if geometry else None)
    except LosslessJpegError as exc:
        raise LosslessJpegError(f"{source}: {exc}") from None
    if geometry is not None and image.shape != geometry.shape:
        if image.size != geometry.lines * geometry.pixels_per_line:
            raise LosslessJpegError(
                f"{source}: {image.shape[0]}x{image.shape[1]} pixeles no caben en {geometry.lines}x"
                f"{geometry.pixels_per_line} del .ics / pixels do not fit the .ics geometry"
            )
        image = image.reshape(geometry.shape)
    return image


def read_ljpeg_dataset(path: str | Path) -> FileDataset:
    """A DDSM ``.LJPEG`` wrapped as a minimal DICOM MG dataset, for the preprocessing pipeline.

    Pixels from :func:`read_ljpeg` (MONOCHROME2, no window: the display range is the data's
    min..max), laterality and view from the file name, pixel spacing from the ``.ics`` resolution.
    """
    source = Path(path)
    pixels = read_ljpeg(source)
    view_name = view_name_of(source)
    ics_path = find_ics(source)
    info = parse_ics(ics_path) if ics_path is not None else None
    geometry = info.views.get(view_name) if info is not None and view_name else None

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["mdd-ddsm", str(source.name)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(source), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = info.case_id if info is not None else source.name.split(".")[0]
    if view_name is not None:
        ds.ImageLaterality, ds.ViewPosition = VIEWS[view_name]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    top_bit = max(int(pixels.max()).bit_length(), 1)
    declared = geometry.bits_per_pixel if geometry is not None and geometry.bits_per_pixel else 16
    stored = min(16, max(declared, top_bit))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, stored, stored - 1
    ds.PixelRepresentation = 0
    if geometry is not None and geometry.resolution_um:
        spacing = f"{geometry.resolution_um / 1000:.6g}"
        ds.PixelSpacing = [spacing, spacing]
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _find_image(folder: Path, filename: str, view: str, suffix: str) -> Path | None:
    exact = folder / f"{filename.replace('-', '_')}.{view}.{suffix}"
    if exact.is_file():
        return exact
    wanted = f".{view}.{suffix}".upper()
    stem = _norm_stem(filename)
    matches = [p for p in folder.iterdir() if p.name.upper().endswith(wanted)]
    preferred = [p for p in matches if _norm_stem(p.name.split(".")[0]) == stem]
    chosen = preferred or matches
    return min(chosen) if chosen else None


def _overlay_labels(abnormalities: list[Abnormality]) -> tuple[int | None, int | None, str | None]:
    """(malignancy, BI-RADS, finding) of one view from its abnormalities."""
    ranks = [PATHOLOGY_RANK.get(a.pathology or "UNPROVEN", -1) for a in abnormalities]
    worst = max(ranks, default=-1)
    malignancy = None if worst < 0 else int(worst == PATHOLOGY_RANK["MALIGNANT"])
    assessments = [a.assessment for a in abnormalities if a.assessment is not None and 0 <= a.assessment <= 6]
    kinds = sorted({t.lower() for a in abnormalities for t in a.lesion_types})
    return malignancy, max(assessments, default=None), "+".join(kinds) or None


def import_case(ics_path: Path) -> ImportResult:
    """Manifest rows for the views of one DDSM case (one ``.ics``)."""
    result = ImportResult()
    info = parse_ics(ics_path)
    folder = ics_path.parent
    if info.density is None:
        result.problems.append(
            f"{ics_path}: densidad ausente o inválida ({info.density_raw}) / missing or invalid density"
        )
    normal_case = not any(v.overlay for v in info.views.values())
    if not info.views:
        result.problems.append(f"{ics_path}: sin vistas en SEQUENCE / no views in SEQUENCE")
    for name, geometry in info.views.items():
        laterality, view = VIEWS[name]
        image = _find_image(folder, info.filename, name, "LJPEG")
        if image is None:
            result.problems.append(f"{ics_path}: falta la imagen {name} / missing image {name}")
            continue
        malignancy: int | None = 0
        birads: int | None = 1 if normal_case else None
        finding: str | None = None
        if geometry.overlay:
            overlay = _find_image(folder, info.filename, name, "OVERLAY")
            if overlay is None:
                result.problems.append(f"{image}: falta el .OVERLAY / missing .OVERLAY; sin etiquetas / unlabelled")
                malignancy = None
            else:
                abnormalities = parse_overlay(overlay)
                malignancy, birads, finding = _overlay_labels(abnormalities)
                if malignancy is None:
                    result.problems.append(f"{overlay}: patología sin confirmar / unproven pathology")
        result.rows.append(
            parse_row(
                {
                    "study_id": info.filename,
                    "patient_id": info.case_id,
                    "laterality": laterality,
                    "view": view,
                    "image_path": str(image.resolve()),
                    "malignancy": malignancy,
                    "birads": birads,
                    "density": info.density,
                    "finding": finding,
                    "source": "ddsm",
                },
                str(ics_path),
            )
        )
    return result


def import_ddsm(src: str | Path) -> ImportResult:
    """Import every DDSM case under ``src`` (any depth): one manifest row per ``.LJPEG`` view.

    Raises :class:`DatasetImportError` when ``src`` is not a folder or holds no ``.ics`` file;
    cases with problems (missing images, unreadable headers) are reported, not fatal.
    """
    root = Path(src)
    if not root.is_dir():
        raise DatasetImportError(f"{root}: no es una carpeta / not a folder")
    headers = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".ics" and p.is_file())
    if not headers:
        raise DatasetImportError(f"{root}: no hay archivos .ics de DDSM / no DDSM .ics files")
    result = ImportResult()
    for ics_path in headers:
        try:
            case = import_case(ics_path)
        except (DatasetImportError, ValueError) as exc:
            result.problems.append(f"{ics_path}: {exc}")
            continue
        result.rows.extend(case.rows)
        result.problems.extend(case.problems)
    return result


__all__ = [
    "PATHOLOGY_RANK",
    "VIEWS",
    "Abnormality",
    "IcsInfo",
    "IcsView",
    "find_ics",
    "import_case",
    "import_ddsm",
    "parse_ics",
    "parse_overlay",
    "read_ljpeg",
    "read_ljpeg_dataset",
    "view_name_of",
]

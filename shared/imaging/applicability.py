"""¿Puede la IA evaluar esta imagen? / can the model evaluate this image at all?

The gates that run before the model. An image the model was never trained for is not scored, and
the triage light says why instead of guessing: not a mammogram, a For Processing image without a
usable window, a magnification, spot-compression or implant-displaced view (View Modifier Code
Sequence, CID 4015), a quality-control or phantom image, tomosynthesis and other multi-frame
objects, an image too small to hold a breast, a window that leaves the breast saturated or flat,
or no breast found.

:func:`header_gates` reads only the header (it runs before the pixels are decoded);
:func:`rendering_gates` looks at the display image and the breast mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from typing import Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from shared.dicom_vocabulary import ViewModifier, view_modifiers_from_dataset
from shared.imaging.display import has_voi, is_for_processing

#: SOP classes of 2D mammography the model reads (For Presentation and For Processing).
MAMMOGRAPHY_SOP_CLASSES: Final[frozenset[str]] = frozenset(
    {"1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1"}
)
#: Breast Tomosynthesis Image Storage and Breast Projection X-Ray Image Storage (both intents).
TOMOSYNTHESIS_SOP_CLASSES: Final[frozenset[str]] = frozenset(
    {"1.2.840.10008.5.1.4.1.1.13.1.3", "1.2.840.10008.5.1.4.1.1.13.1.4", "1.2.840.10008.5.1.4.1.1.13.1.5"}
)
#: Shortest side, in pixels, of an image that can hold a whole breast at the model's input size.
MIN_MATRIX: Final[int] = 256
#: Shortest side, in millimetres, of a whole-breast field (a spot or cropped image is smaller).
MIN_FIELD_MM: Final[float] = 80.0
#: Below this fraction of the image the breast is missing or badly exposed.
MIN_BREAST_AREA_FRACTION: Final[float] = 0.05
#: Share of breast pixels clipped to black or white above which the window is unusable.
MAX_SATURATED_FRACTION: Final[float] = 0.5
#: Spread (5th to 95th percentile of the breast, display 0..1) below which the window is unusable.
MIN_BREAST_SPREAD: Final[float] = 0.05
_QC_WORDS: Final[frozenset[str]] = frozenset({"PHANTOM", "FANTOMA", "QC"})
_QC_PHRASES: Final[tuple[str, ...]] = ("QUALITY CONTROL", "CONTROL DE CALIDAD")


class NotEvaluable(str, Enum):
    """Why the model does not score an image (the value is what events carry)."""

    NOT_MAMMOGRAM = "not_mammogram"
    FOR_PROCESSING_WITHOUT_WINDOW = "for_processing_without_window"
    MAGNIFICATION = "magnification"
    SPOT_COMPRESSION = "spot_compression"
    IMPLANT_DISPLACED = "implant_displaced"
    QUALITY_CONTROL = "quality_control"
    MULTI_FRAME = "multi_frame"
    TOO_SMALL = "too_small"
    EXTREME_WINDOW = "extreme_window"
    NO_BREAST = "no_breast"

    @property
    def label(self) -> str:
        """What the light says, Spanish first: ``no evaluable por IA: … / not evaluable by AI: …``."""
        spanish, english = _LABELS[self]
        return f"no evaluable por IA: {spanish} / not evaluable by AI: {english}"

    @property
    def parts(self) -> tuple[str, str]:
        """``(spanish, english)`` of the reason alone."""
        return _LABELS[self]


_LABELS: Final[dict[NotEvaluable, tuple[str, str]]] = {
    NotEvaluable.NOT_MAMMOGRAM: ("no es una mastografía", "not a mammogram"),
    NotEvaluable.FOR_PROCESSING_WITHOUT_WINDOW: (
        "imagen para procesamiento sin ventana utilizable", "For Processing image without a usable window"
    ),
    NotEvaluable.MAGNIFICATION: ("vista magnificada", "magnified view"),
    NotEvaluable.SPOT_COMPRESSION: ("compresión focal", "spot compression view"),
    NotEvaluable.IMPLANT_DISPLACED: ("vista con implante desplazado", "implant-displaced view"),
    NotEvaluable.QUALITY_CONTROL: ("imagen de control de calidad o fantoma", "quality-control or phantom image"),
    NotEvaluable.MULTI_FRAME: (
        "tomosíntesis u objeto multicuadro (no soportado)", "tomosynthesis or multi-frame object (not supported)"
    ),
    NotEvaluable.TOO_SMALL: ("imagen demasiado pequeña", "image too small"),
    NotEvaluable.EXTREME_WINDOW: (
        "ventana extrema: la mama queda saturada o sin contraste", "extreme window: the breast is saturated or flat"
    ),
    NotEvaluable.NO_BREAST: ("no se encontró la mama", "no breast found"),
}
_MODIFIER_GATES: Final[dict[ViewModifier, NotEvaluable]] = {
    ViewModifier.MAGNIFICATION: NotEvaluable.MAGNIFICATION,
    ViewModifier.SPOT_COMPRESSION: NotEvaluable.SPOT_COMPRESSION,
    ViewModifier.IMPLANT_DISPLACED: NotEvaluable.IMPLANT_DISPLACED,
}


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if isinstance(value, (MultiValue, list, tuple)):
        return " ".join(str(v) for v in value).strip().upper()
    return str(value or "").strip().upper()


def is_quality_control(ds: Dataset) -> bool:
    """QualityControlImage YES, or a phantom / QC word in the image type, body part or descriptions."""
    if _text(ds, "QualityControlImage") == "YES":
        return True
    for keyword in ("ImageType", "BodyPartExamined", "SeriesDescription", "ProtocolName", "StudyDescription"):
        text = _text(ds, keyword)
        words = set(re.split(r"[^A-Z]+", text))
        if words & _QC_WORDS or any(phrase in text for phrase in _QC_PHRASES):
            return True
    return False


def _frames(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _field_mm(ds: Dataset) -> float | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        row_mm, col_mm = (float(v) for v in spacing)  # type: ignore[union-attr]
        return min(int(ds.Rows) * row_mm, int(ds.Columns) * col_mm)
    except (TypeError, ValueError, AttributeError):
        return None


def header_gates(ds: Dataset) -> list[NotEvaluable]:
    """The reasons, read from the header alone, why ``ds`` must not be scored (empty: go on)."""
    found: list[NotEvaluable] = []
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = _text(ds, "Modality")
    if sop_class in TOMOSYNTHESIS_SOP_CLASSES or _frames(ds) > 1:
        found.append(NotEvaluable.MULTI_FRAME)
    if modality != "MG" or (sop_class and sop_class not in MAMMOGRAPHY_SOP_CLASSES | TOMOSYNTHESIS_SOP_CLASSES):
        found.append(NotEvaluable.NOT_MAMMOGRAM)
    if is_quality_control(ds):
        found.append(NotEvaluable.QUALITY_CONTROL)
    modifiers = view_modifiers_from_dataset(ds)
    found += [gate for modifier, gate in _MODIFIER_GATES.items() if modifier in modifiers]
    if is_for_processing(ds) and not has_voi(ds):
        found.append(NotEvaluable.FOR_PROCESSING_WITHOUT_WINDOW)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    field = _field_mm(ds)
    if min(rows, cols) < MIN_MATRIX or (field is not None and field < MIN_FIELD_MM):
        found.append(NotEvaluable.TOO_SMALL)
    return found


def rendering_gates(display: np.ndarray, breast_mask: np.ndarray, windowed: bool) -> list[NotEvaluable]:
    """Reasons found in the pixels: no breast, or (for an image shown through its own window) a window
    that clips most of the breast to black or white or leaves it without contrast."""
    area = float(np.count_nonzero(breast_mask)) / max(breast_mask.size, 1)
    if area < MIN_BREAST_AREA_FRACTION:
        return [NotEvaluable.NO_BREAST]
    if not windowed:
        return []
    step = max(1, int(np.sqrt(breast_mask.size / 250_000)))  # a quarter-million pixels are plenty
    values = display[::step, ::step][breast_mask[::step, ::step]]
    saturated = float(np.mean((values <= 0.002) | (values >= 0.998)))
    low, high = np.percentile(values, (5.0, 95.0))
    if saturated > MAX_SATURATED_FRACTION or float(high - low) < MIN_BREAST_SPREAD:
        return [NotEvaluable.EXTREME_WINDOW]
    return []


def labels(reasons: Iterable[NotEvaluable | str]) -> list[str]:
    """The bilingual label of each reason (codes given as text are looked up)."""
    return [NotEvaluable(r).label for r in reasons]


__all__ = [
    "MAMMOGRAPHY_SOP_CLASSES",
    "MIN_BREAST_AREA_FRACTION",
    "MIN_FIELD_MM",
    "MIN_MATRIX",
    "NotEvaluable",
    "TOMOSYNTHESIS_SOP_CLASSES",
    "header_gates",
    "is_quality_control",
    "labels",
    "rendering_gates",
]

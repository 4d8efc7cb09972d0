"""The DICOM vocabulary of mammography, in one place: laterality, views, view modifiers, display
window, orientation and DIMSE statuses.

Every service reads views and laterality through this module, so that an ``LM`` view (or a view
given only by its View Code Sequence) lands in the same slot at ingest, in preprocessing, in the
results and in the viewer. Codes come from pydicom's copy of the DICOM content mapping resources
(CID 244 Laterality, CID 4014 View for Mammography, CID 4015 View Modifier for Mammography);
statuses from pynetdicom's :class:`~pynetdicom.status.Status` and PS3.4. How pixels become a
display image lives next door, in :mod:`shared.imaging.display`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr.coding import Code
from pydicom.sr.codedict import codes
from pynetdicom.status import Status


class Laterality(str, Enum):
    """Which breast an image shows (ImageLaterality / Laterality / FrameLaterality)."""

    RIGHT = "R"
    LEFT = "L"

    @property
    def code(self) -> Code:
        """CID 244 code of this laterality."""
        return codes.SCT.Right if self is Laterality.RIGHT else codes.SCT.Left

    @property
    def label(self) -> str:
        """Name shown to users, Spanish first."""
        return "Mama derecha / right breast" if self is Laterality.RIGHT else "Mama izquierda / left breast"


class View(str, Enum):
    """The two views of each breast a screening study holds; every projection maps to one of them."""

    CC = "CC"
    MLO = "MLO"


@dataclass(frozen=True)
class Projection:
    """One mammographic projection: its ViewPosition value, CID 4014 code and the slot it fills."""

    view_position: str
    code: Code
    view: View


#: Every CID 4014 projection, by its ViewPosition (0018,5101) value. Lateral and oblique
#: projections fill the MLO slot, cranio-caudal and caudo-cranial ones the CC slot.
PROJECTIONS: Final[dict[str, Projection]] = {
    p.view_position: p
    for p in (
        Projection("CC", codes.SCT.CranioCaudal, View.CC),
        Projection("XCCL", codes.SCT.CranioCaudalExaggeratedLaterally, View.CC),
        Projection("XCCM", codes.SCT.CranioCaudalExaggeratedMedially, View.CC),
        Projection("FB", codes.SCT.CaudoCranial, View.CC),
        Projection("MLO", codes.SCT.MedioLateralObliqueProjection, View.MLO),
        Projection("ML", codes.SCT.MedioLateralProjection, View.MLO),
        Projection("LM", codes.SCT.LateroMedial, View.MLO),
        Projection("LMO", codes.SCT.LateroMedialOblique, View.MLO),
        Projection("SIO", codes.SCT.SuperolateralToInferomedialOblique, View.MLO),
        Projection("ISO", codes.SCT.InferomedialToSuperolateralOblique, View.MLO),
    )
}
#: ViewPosition values some vendors write that are not DICOM's defined terms.
_VIEW_POSITION_ALIASES: Final[dict[str, str]] = {"XCC": "XCCL", "CCX": "XCCL", "MO": "MLO", "OBL": "MLO"}
#: Legacy SNOMED RT codes of CID 4014, still sent by older modalities.
_LEGACY_VIEW_CODES: Final[dict[str, str]] = {"R-10242": "CC", "R-10226": "MLO", "R-10224": "ML"}
_PROJECTION_BY_CODE: Final[dict[str, Projection]] = {
    **{p.code.value: p for p in PROJECTIONS.values()},
    **{code: PROJECTIONS[position] for code, position in _LEGACY_VIEW_CODES.items()},
}


class ViewModifier(str, Enum):
    """CID 4015 View Modifier for Mammography, by keyword."""

    MAGNIFICATION = "Magnification"
    SPOT_COMPRESSION = "SpotCompression"
    IMPLANT_DISPLACED = "ImplantDisplaced"
    ROLLED_LATERAL = "RolledLateral"
    ROLLED_MEDIAL = "RolledMedial"
    ROLLED_SUPERIOR = "RolledSuperior"
    ROLLED_INFERIOR = "RolledInferior"
    CLEAVAGE = "Cleavage"
    AXILLARY_TAIL = "AxillaryTail"
    TANGENTIAL = "Tangential"
    NIPPLE_IN_PROFILE = "NippleInProfile"
    ANTERIOR_COMPRESSION = "AnteriorCompression"
    INFRA_MAMMARY_FOLD = "InfraMammaryFold"
    AXILLARY_TISSUE = "AxillaryTissue"

    @property
    def code(self) -> Code:
        """The SNOMED CT code of this modifier."""
        return getattr(codes.SCT, self.value)  # type: ignore[no-any-return]

    @property
    def label(self) -> str:
        """Name shown to users, Spanish first."""
        return VIEW_MODIFIER_LABELS[self]


VIEW_MODIFIER_LABELS: Final[dict[ViewModifier, str]] = {
    ViewModifier.MAGNIFICATION: "vista magnificada / magnified view",
    ViewModifier.SPOT_COMPRESSION: "compresión focal / spot compression",
    ViewModifier.IMPLANT_DISPLACED: "implante desplazado / implant displaced",
    ViewModifier.ROLLED_LATERAL: "rotada lateral / rolled lateral",
    ViewModifier.ROLLED_MEDIAL: "rotada medial / rolled medial",
    ViewModifier.ROLLED_SUPERIOR: "rotada superior / rolled superior",
    ViewModifier.ROLLED_INFERIOR: "rotada inferior / rolled inferior",
    ViewModifier.CLEAVAGE: "vista del escote / cleavage",
    ViewModifier.AXILLARY_TAIL: "cola axilar / axillary tail",
    ViewModifier.TANGENTIAL: "tangencial / tangential",
    ViewModifier.NIPPLE_IN_PROFILE: "pezón de perfil / nipple in profile",
    ViewModifier.ANTERIOR_COMPRESSION: "compresión anterior / anterior compression",
    ViewModifier.INFRA_MAMMARY_FOLD: "pliegue inframamario / infra-mammary fold",
    ViewModifier.AXILLARY_TISSUE: "tejido axilar / axillary tissue",
}
_MODIFIER_BY_CODE: Final[dict[str, ViewModifier]] = {modifier.code.value: modifier for modifier in ViewModifier}
_MODIFIER_BY_MEANING: Final[dict[str, ViewModifier]] = {
    modifier.code.meaning.lower(): modifier for modifier in ViewModifier
}

#: The four views of a screening study.
STANDARD_VIEWS: Final[frozenset[tuple[Laterality, View]]] = frozenset(
    (laterality, view) for laterality in Laterality for view in View
)


def laterality_of(value: str | None) -> Laterality | None:
    """``R``/``L`` (any case, surrounding spaces) as a :class:`Laterality`; ``None`` otherwise."""
    try:
        return Laterality((value or "").strip().upper())
    except ValueError:
        return None


def laterality_from_dataset(ds: Dataset) -> Laterality | None:
    """ImageLaterality, else Laterality, else the first frame's FrameLaterality; ``None`` when none says."""
    for keyword in ("ImageLaterality", "Laterality", "FrameLaterality"):
        if (found := laterality_of(str(ds.get(keyword, "") or ""))) is not None:
            return found
    for group in ds.get("SharedFunctionalGroupsSequence", None) or []:
        for frame in group.get("FrameAnatomySequence", None) or []:
            if (found := laterality_of(str(frame.get("FrameLaterality", "") or ""))) is not None:
                return found
    return None


def projection_of(view_position: str | None) -> Projection | None:
    """The projection a ViewPosition value names (aliases included); ``None`` for others."""
    position = (view_position or "").strip().upper()
    return PROJECTIONS.get(_VIEW_POSITION_ALIASES.get(position, position))


def view_of(view_position: str | None) -> View | None:
    """The slot (CC or MLO) a ViewPosition value fills; ``None`` for other or missing views."""
    projection = projection_of(view_position)
    return projection.view if projection else None


def projection_from_dataset(ds: Dataset) -> Projection | None:
    """The projection of an image: ViewPosition, else the View Code Sequence's code."""
    if (projection := projection_of(str(ds.get("ViewPosition", "") or ""))) is not None:
        return projection
    for item in ds.get("ViewCodeSequence", None) or []:
        if (found := _PROJECTION_BY_CODE.get(str(item.get("CodeValue", "") or "").strip())) is not None:
            return found
    return None


def view_modifiers_from_dataset(ds: Dataset) -> frozenset[ViewModifier]:
    """Every view modifier of an image, from the View Modifier Code Sequence inside the View Code Sequence
    (where the Mammography Image module puts it) or at the top level (where some vendors do)."""
    items: list[Dataset] = list(ds.get("ViewModifierCodeSequence", None) or [])
    for view in ds.get("ViewCodeSequence", None) or []:
        items.extend(view.get("ViewModifierCodeSequence", None) or [])
    found: set[ViewModifier] = set()
    for item in items:
        value = str(item.get("CodeValue", "") or "").strip()
        meaning = str(item.get("CodeMeaning", "") or "").strip().lower()
        modifier = _MODIFIER_BY_CODE.get(value) or _MODIFIER_BY_MEANING.get(meaning)
        if modifier is not None:
            found.add(modifier)
    return frozenset(found)


def has_standard_views(views: Iterable[tuple[str | Laterality | None, str | View | None]]) -> bool:
    """True when R-CC, L-CC, R-MLO and L-MLO are all among ``views`` (laterality, ViewPosition or slot)."""
    present = {(laterality_of(str(lat.value if isinstance(lat, Laterality) else lat or "")),
                view_of(str(v.value if isinstance(v, View) else v or ""))) for lat, v in views}
    return STANDARD_VIEWS <= present  # type: ignore[operator]


Slot = tuple[Laterality, View]
"""Where an image hangs among the four screening views, e.g. (Laterality.LEFT, View.MLO)."""


def slot_from_dataset(ds: Dataset) -> Slot | None:
    """The slot of an image from its laterality and projection (ViewPosition or View Code Sequence)."""
    laterality, projection = laterality_from_dataset(ds), projection_from_dataset(ds)
    if laterality is None or projection is None:
        return None
    return laterality, projection.view


def view_label(laterality: str | Laterality | None, view_position: str | View | None) -> str:
    """A compact label of a view, e.g. ``L-MLO`` for an ``L`` ``LM`` image (``?`` for what is missing)."""
    side = laterality_of(str(laterality.value if isinstance(laterality, Laterality) else laterality or ""))
    position = str(view_position.value if isinstance(view_position, View) else view_position or "")
    view = view_of(position)
    return f"{side.value if side else '?'}-{view.value if view else (position.strip().upper() or '?')}"


def parse_view_label(label: str) -> tuple[str | None, str | None]:
    """The (laterality, view) of a label made by :func:`view_label`."""
    laterality, _, view = label.partition("-")
    return (None if laterality == "?" else laterality), (None if view == "?" else view)


# --- Orientation (Patient Orientation, PS3.3 C.7.6.1.1.1) and the hanging of mammograms.

#: Patient Orientation (row direction, column direction) of each view as radiologists hang it: right
#: breast on the left of the screen and left breast on the right, chest walls back to back, and the
#: head up for the MLO views (the IHE Mammography Image profile's convention).
HANGING_ORIENTATION: Final[dict[Slot, tuple[str, str]]] = {
    (Laterality.RIGHT, View.CC): ("P", "L"),
    (Laterality.LEFT, View.CC): ("A", "R"),
    (Laterality.RIGHT, View.MLO): ("P", "F"),
    (Laterality.LEFT, View.MLO): ("A", "F"),
}
_OPPOSITE_DIRECTION: Final[dict[str, str]] = {"A": "P", "P": "A", "L": "R", "R": "L", "H": "F", "F": "H"}


def patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """The first letter of each Patient Orientation value (row, column), or ``None`` when it is not given."""
    values = ds.get("PatientOrientation", None)
    parts = [str(part).strip().upper() for part in (values if isinstance(values, (list, MultiValue)) else [values or ""])]
    if len(parts) != 2 or not all(parts) or any(part[0] not in _OPPOSITE_DIRECTION for part in parts):
        return None
    return parts[0][0], parts[1][0]


def hanging_flips(ds: Dataset, slot: Slot) -> tuple[bool, bool] | None:
    """Whether an image must be mirrored (left-right, top-bottom) to hang as ``slot``; ``None``
    when its Patient Orientation does not say (see :func:`chest_wall_on_left`)."""
    orientation = patient_orientation(ds)
    if orientation is None:
        return None
    wanted_row, wanted_col = HANGING_ORIENTATION[slot]
    return orientation[0] == _OPPOSITE_DIRECTION[wanted_row], orientation[1] == _OPPOSITE_DIRECTION[wanted_col]


def chest_wall_on_left(display: np.ndarray) -> bool:
    """Guess from a display image (breast bright) whether the chest wall is on its left edge.

    The breast rests against the chest wall, so the half of the image holding more tissue is the
    chest wall's side.
    """
    half = display.shape[1] // 2
    data = display.astype(np.float32, copy=False)
    return float(data[:, :half].mean()) >= float(data[:, display.shape[1] - half :].mean())


# --- Display: what the grey levels of an image mean (PS3.3 C.11.2 VOI LUT, C.7.6.3.1.2 photometric).

#: Digital Mammography X-Ray Image Storage - For Processing, and its Digital X-Ray sibling.
FOR_PROCESSING_SOP_CLASSES: Final[frozenset[str]] = frozenset(
    {"1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.1.1.1"}
)


def is_for_processing(ds: Dataset) -> bool:
    """Whether the image is a raw For Processing image (SOP class or Presentation Intent Type)."""
    intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
    return str(ds.get("SOPClassUID", "") or "") in FOR_PROCESSING_SOP_CLASSES or intent == "FOR PROCESSING"


def is_inverted(ds: Dataset) -> bool:
    """MONOCHROME1: the lowest value is white, so the display must be inverted for the breast to be bright."""
    return str(ds.get("PhotometricInterpretation", "") or "").strip().upper() == "MONOCHROME1"


def has_voi(ds: Dataset) -> bool:
    """Whether the image offers a VOI LUT or a window (Window Center and Width)."""
    return bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)


class DimseStatus(IntEnum):
    """The DIMSE statuses the project answers or reads (PS3.4 Annex B, C and GG; PS3.7 Annex C)."""

    SUCCESS = int(Status.SUCCESS)
    PENDING = int(Status.PENDING)
    CANCEL = int(Status.CANCEL)
    WARNING_COERCION = 0xB000
    WARNING_ELEMENTS_DISCARDED = 0xB006
    WARNING_DATASET_DOES_NOT_MATCH = 0xB007
    PENDING_WITH_WARNINGS = 0xFF01
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    MOVE_DESTINATION_UNKNOWN = int(Status.MOVE_DESTINATION_UNKNOWN)
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # the same code, as C-FIND, C-MOVE and C-GET name it
    CANNOT_UNDERSTAND = 0xC000
    UNABLE_TO_PROCESS = 0xC001
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000  # the same code as WARNING_COERCION, for C-MOVE and C-GET


#: Statuses after which a C-STORE's instance is stored (success or a warning).
STORED_STATUSES: Final[frozenset[int]] = frozenset(
    {DimseStatus.SUCCESS, DimseStatus.WARNING_COERCION, DimseStatus.WARNING_ELEMENTS_DISCARDED,
     DimseStatus.WARNING_DATASET_DOES_NOT_MATCH}
)

"""The DICOM vocabulary of mammography, in one place: laterality, views, view modifiers, DIMSE statuses.

Every service reads views and laterality through this module, so that an ``LM`` view (or a view
given only by its View Code Sequence) lands in the same slot at ingest, in preprocessing, in the
results and in the viewer. Codes come from pydicom's copy of the DICOM content mapping resources
(CID 244 Laterality, CID 4014 View for Mammography, CID 4015 View Modifier for Mammography);
statuses from pynetdicom's :class:`~pynetdicom.status.Status` and PS3.4.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from pydicom.dataset import Dataset
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

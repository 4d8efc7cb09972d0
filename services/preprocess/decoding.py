"""Laterality and view of an image for the preprocessing pipeline, and its display image.

The vocabulary (every CID 4014 projection and its CC/MLO slot, laterality tags) lives in
:mod:`shared.dicom_vocabulary`, the decoding and windowing in :mod:`shared.dicom_display`; this
module gives the pipeline their answers as the plain ``"R"``/``"L"`` and ``"CC"``/``"MLO"``
strings its outputs carry.
"""

from __future__ import annotations

from typing import Final, Literal

import pydicom

from shared.dicom_display import WINDOW_PERCENTILES, DecodingError, decode_pixels, to_display
from shared.dicom_vocabulary import is_for_processing, laterality_from_dataset, projection_from_dataset

Laterality = Literal["R", "L"]
View = Literal["CC", "MLO"]

#: Digital Mammography X-Ray Image Storage - For Processing.
MG_FOR_PROCESSING: Final[str] = "1.2.840.10008.5.1.4.1.1.1.2.1"
#: Digital X-Ray Image Storage - For Processing.
DX_FOR_PROCESSING: Final[str] = "1.2.840.10008.5.1.4.1.1.1.1.1"


def laterality_from_tags(ds: pydicom.Dataset) -> Laterality | None:
    """ImageLaterality, Laterality or FrameLaterality as ``"R"``/``"L"``; ``None`` otherwise."""
    laterality = laterality_from_dataset(ds)
    return None if laterality is None else laterality.value  # type: ignore[return-value]


def view_from_tags(ds: pydicom.Dataset) -> View | None:
    """The slot of ViewPosition, or else of the View Code Sequence, as ``"CC"``/``"MLO"``; ``None`` otherwise.

    XCCL, XCCM and FB fill the CC slot; ML, LM, LMO, SIO and ISO the MLO slot.
    """
    projection = projection_from_dataset(ds)
    return None if projection is None else projection.view.value  # type: ignore[return-value]


def view_of(ds: pydicom.Dataset) -> tuple[Laterality | None, View | None]:
    """(laterality, view) from the tags; ``None`` where the tags do not say."""
    return laterality_from_tags(ds), view_from_tags(ds)


__all__ = [
    "WINDOW_PERCENTILES",
    "DecodingError",
    "decode_pixels",
    "is_for_processing",
    "laterality_from_tags",
    "to_display",
    "view_from_tags",
    "view_of",
]

"""What ingest accepts: the storage SOP classes of mammography and their kin."""

from __future__ import annotations

from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    BreastTomosynthesisImageStorage,
    ComprehensiveSRStorage,
    MammographyCADSRStorage,
    ComputedRadiographyImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

STORAGE_SOP_CLASSES: tuple[str, ...] = (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ComputedRadiographyImageStorage,
    SecondaryCaptureImageStorage,
)
#: Classes of our own results (besides Secondary Capture): retrievable by C-GET and C-MOVE, never accepted by C-STORE.
RESULT_SOP_CLASSES: tuple[str, ...] = (MammographyCADSRStorage, ComprehensiveSRStorage)
IMAGE_ATTRIBUTES: tuple[str, ...] = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")

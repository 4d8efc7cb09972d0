"""The pynetdicom Storage SCP: network machinery only, behaviour comes from the handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    BreastTomosynthesisImageStorage,
    ComputedRadiographyImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

log = logging.getLogger("mdd.ingest.scp")

STORAGE_SOP_CLASSES = (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ComputedRadiographyImageStorage,
    SecondaryCaptureImageStorage,
)
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
MAX_PDU_BYTES = 4 * 1024 * 1024


def start_scp(
    ae_title: str,
    host: str,
    port: int,
    handle_echo: Callable[..., object],
    handle_store: Callable[..., object],
    max_associations: int = 25,
) -> ThreadedAssociationServer:
    """Start the Storage SCP in background threads and return its server (call ``shutdown()``)."""
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.maximum_associations = max_associations
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    server = ae.start_server(
        (host, port),
        block=False,
        evt_handlers=[(evt.EVT_C_ECHO, handle_echo), (evt.EVT_C_STORE, handle_store)],
    )
    log.info("SCP DICOM escuchando / listening on %s:%d AE %s", host, port, ae_title)
    return server

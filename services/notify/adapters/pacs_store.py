"""C-STORE to a PACS (pynetdicom SCU): one association for a batch of instances."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from shared.dicom_vocabulary import STORED_STATUSES
from shared.settings import DicomDestination

log = logging.getLogger("mdd.notify.pacs")
TIMEOUT_SECONDS = 30.0


class PacsStoreError(RuntimeError):
    """The PACS could not be reached, refused the association or did not store an instance."""


def describe(destination: DicomDestination) -> str:
    """``AE@host:port``, how a destination is named in logs, records and events."""
    return f"{destination.ae_title}@{destination.host}:{destination.port}"


def store_instances(destination: DicomDestination, calling_ae: str, datasets: list[Dataset]) -> dict[str, int]:
    """C-STORE every dataset in one association; returns the status of each SOP Instance UID.

    Raises ``PacsStoreError`` when no association could be made. A status that is not in
    ``STORED_STATUSES`` (or a lost association, reported as 0xFFFF) means that instance was not stored.
    """
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_SECONDS
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise PacsStoreError(f"El PACS {describe(destination)} no aceptó la asociación / association refused or unreachable")
    statuses: dict[str, int] = {}
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            statuses[str(dataset.SOPInstanceUID)] = int(status.Status) if status and "Status" in status else 0xFFFF
            log.info("C-STORE %s -> %s: 0x%04X", dataset.SOPInstanceUID, describe(destination), statuses[str(dataset.SOPInstanceUID)])
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses

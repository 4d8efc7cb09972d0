"""C-STORE to a PACS (pynetdicom SCU): one association for a batch of instances."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from shared.dicom_network import DicomPeerError, associate, describe, new_ae
from shared.dicom_vocabulary import STORED_STATUSES
from shared.settings import DicomDestination, Settings

__all__ = ["STORED_STATUSES", "PacsStoreError", "describe", "store_instances"]
log = logging.getLogger("mdd.notify.pacs")


class PacsStoreError(RuntimeError):
    """The PACS could not be reached, refused the association or did not store an instance."""


def store_instances(destination: DicomDestination, calling_ae: str, datasets: list[Dataset], settings: Settings) -> dict[str, int]:
    """C-STORE every dataset in one association; returns the status of each SOP Instance UID.

    Raises ``PacsStoreError`` when no association could be made. A status that is not in
    ``STORED_STATUSES`` (or a lost association, reported as 0xFFFF) means that instance was not stored.
    """
    ae = new_ae(calling_ae, settings)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        assoc = associate(ae, destination, settings)
    except DicomPeerError as exc:
        raise PacsStoreError(f"El PACS {exc}") from exc
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

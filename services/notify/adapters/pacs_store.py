"""C-STORE to a PACS (pynetdicom SCU): one association for a batch of instances."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from shared.dicom_network import DicomPeerError, associate, describe, new_ae
from shared.dicom_vocabulary import STORED_STATUSES
from shared.reliability.errors import Dependency, DependencyUnavailable
from shared.settings import DicomDestination, Settings

__all__ = ["STORED_STATUSES", "UNAVAILABLE_STATUSES", "PacsStoreError", "PacsUnavailable", "describe", "store_instances"]
log = logging.getLogger("mdd.notify.pacs")


class PacsStoreError(RuntimeError):
    """The PACS refused an instance (a failure status): sending it again the same way will not help."""


class PacsUnavailable(DependencyUnavailable):
    """The PACS could not be reached, refused the association, dropped it or is out of resources: wait for it."""

    def __init__(self, message: str) -> None:
        super().__init__(Dependency.PACS, message)


#: Statuses that say "not now" rather than "never": out of resources, or the association was lost.
UNAVAILABLE_STATUSES = frozenset({0xA700, 0xA701, 0xA702, 0xFFFF})


def store_instances(destination: DicomDestination, calling_ae: str, datasets: list[Dataset], settings: Settings) -> dict[str, int]:
    """C-STORE every dataset in one association; returns the status of each SOP Instance UID.

    Raises ``PacsUnavailable`` when no association could be made. A status that is not in
    ``STORED_STATUSES`` (or a lost association, reported as 0xFFFF) means that instance was not stored.
    """
    ae = new_ae(calling_ae, settings)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        assoc = associate(ae, destination, settings)
    except DicomPeerError as exc:  # not reached, or the association refused: wait for it
        raise PacsUnavailable(f"El PACS {exc}") from exc
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

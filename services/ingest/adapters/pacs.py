"""A PACS as pynetdicom sees it: C-FIND for new mammography studies, C-GET to bring them here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from shared.dicom_vocabulary import DimseStatus
from services.ingest.adapters.scp import TRANSFER_SYNTAXES, ReceivedInstance, received_instance
from services.ingest.sop_classes import STORAGE_SOP_CLASSES

log = logging.getLogger("mdd.ingest.pacs")
PENDING = (DimseStatus.PENDING, DimseStatus.PENDING_WITH_WARNINGS)


class PacsError(RuntimeError):
    """The PACS refused the association or answered a failure."""


@dataclass(frozen=True)
class PacsStudy:
    """A study the PACS reported for the query."""

    study_uid: str
    study_date: str
    accession_number: str


def _associate(ae: AE, host: str, port: int, called_ae: str, **kwargs: object):  # type: ignore[no-untyped-def]
    assoc = ae.associate(host, port, ae_title=called_ae, **kwargs)
    if not assoc.is_established:
        raise PacsError(f"El PACS {called_ae}@{host}:{port} rechazó la asociación / association refused")
    return assoc


def find_studies(host: str, port: int, called_ae: str, calling_ae: str, modality: str, since: str) -> list[PacsStudy]:
    """C-FIND at study level: studies with ``modality`` dated ``since`` (YYYYMMDD) or later."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.StudyDate = f"{since}-"
    query.AccessionNumber = ""
    query.ModalitiesInStudy = modality
    assoc = _associate(ae, host, port, called_ae)
    studies: list[PacsStudy] = []
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if not status or status.Status not in (*PENDING, DimseStatus.SUCCESS):
                raise PacsError(f"C-FIND falló / failed: 0x{int(status.Status) if status else 0xFFFF:04X}")
            if status.Status in PENDING and identifier is not None:
                studies.append(
                    PacsStudy(
                        study_uid=str(identifier.StudyInstanceUID),
                        study_date=str(identifier.get("StudyDate", "")),
                        accession_number=str(identifier.get("AccessionNumber", "")),
                    )
                )
    finally:
        assoc.release()
    return studies


def get_study(
    host: str, port: int, called_ae: str, calling_ae: str, study_uid: str, on_instance: Callable[[ReceivedInstance], int]
) -> int:
    """C-GET a whole study; each instance received is passed to ``on_instance`` (returns a status).

    Returns the number of instances that were received.
    """
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_requested_context(sop_class, TRANSFER_SYNTAXES)
        roles.append(build_role(sop_class, scp_role=True))
    received = 0

    def handle_store(event: evt.Event) -> int:
        nonlocal received
        received += 1
        return on_instance(received_instance(event))

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    assoc = _associate(ae, host, port, called_ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if status and status.Status not in (*PENDING, DimseStatus.SUCCESS, DimseStatus.SUB_OPERATIONS_COMPLETE_WITH_FAILURES):
                raise PacsError(f"C-GET falló / failed: 0x{int(status.Status):04X}")
    finally:
        assoc.release()
    return received

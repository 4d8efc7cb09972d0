"""A PACS as pynetdicom sees it: C-FIND for new mammography studies, C-GET or C-MOVE to bring them here.

Associations go through :mod:`shared.dicom_network` (our implementation identity, ``MDD_DICOM_MAX_PDU``,
DICOM TLS when ``MDD_PACS_TLS``). With C-MOVE the PACS sends the instances to our own Storage SCP
(``MDD_AE_TITLE``, which must be configured in the PACS as a move destination); they are stored
as any C-STORE, under the PACS's hospital.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from shared.dicom_network import DicomPeerError, associate, new_ae
from shared.dicom_vocabulary import DimseStatus
from shared.settings import DicomDestination, Settings
from services.ingest.adapters.scp import TRANSFER_SYNTAXES, ReceivedInstance, received_instance
from services.ingest.sop_classes import STORAGE_SOP_CLASSES

log = logging.getLogger("mdd.ingest.pacs")
PENDING = (DimseStatus.PENDING, DimseStatus.PENDING_WITH_WARNINGS)
#: Final statuses of a retrieve whose sub-operations ran (some may have failed: those are logged).
RETRIEVED = (DimseStatus.SUCCESS, DimseStatus.SUB_OPERATIONS_COMPLETE_WITH_FAILURES)


class PacsError(RuntimeError):
    """The PACS refused the association or answered a failure."""


@dataclass(frozen=True)
class PacsStudy:
    """A study the PACS reported for the query."""

    study_uid: str
    study_date: str
    accession_number: str


def _associate(settings: Settings, pacs: DicomDestination, contexts: list[str], **kwargs: object):  # type: ignore[no-untyped-def]
    ae = new_ae(settings.ae_title, settings)
    for sop_class in contexts:
        ae.add_requested_context(sop_class, TRANSFER_SYNTAXES if sop_class in STORAGE_SOP_CLASSES else None)  # type: ignore[arg-type]
    try:
        return associate(ae, pacs, settings, **kwargs)
    except DicomPeerError as exc:
        raise PacsError(f"El PACS {exc}") from exc


def find_studies(settings: Settings, pacs: DicomDestination, modality: str, since: str) -> list[PacsStudy]:
    """C-FIND at study level: studies with ``modality`` dated ``since`` (YYYYMMDD) or later."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.StudyDate = f"{since}-"
    query.AccessionNumber = ""
    query.ModalitiesInStudy = modality
    assoc = _associate(settings, pacs, [StudyRootQueryRetrieveInformationModelFind])
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


def _study_identifier(study_uid: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    return query


def get_study(settings: Settings, pacs: DicomDestination, study_uid: str, on_instance: Callable[[ReceivedInstance], int]) -> int:
    """C-GET a whole study; each instance received is passed to ``on_instance`` (returns a status).

    Returns the number of instances that were received.
    """
    received = 0

    def handle_store(event: evt.Event) -> int:
        nonlocal received
        received += 1
        return on_instance(received_instance(event))

    roles = [build_role(sop_class, scp_role=True) for sop_class in STORAGE_SOP_CLASSES]
    assoc = _associate(
        settings, pacs, [StudyRootQueryRetrieveInformationModelGet, *STORAGE_SOP_CLASSES],
        ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )
    try:
        for status, _ in assoc.send_c_get(_study_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet):
            if status and status.Status not in (*PENDING, *RETRIEVED):
                raise PacsError(f"C-GET falló / failed: 0x{int(status.Status):04X}")
    finally:
        assoc.release()
    return received


def move_study(settings: Settings, pacs: DicomDestination, study_uid: str) -> int:
    """C-MOVE a whole study to our own Storage SCP (``MDD_AE_TITLE``); returns how many sub-operations completed."""
    assoc = _associate(settings, pacs, [StudyRootQueryRetrieveInformationModelMove])
    completed = 0
    try:
        for status, _ in assoc.send_c_move(_study_identifier(study_uid), settings.ae_title, StudyRootQueryRetrieveInformationModelMove):
            if not status:
                raise PacsError("C-MOVE sin respuesta / no response")
            if status.Status not in (*PENDING, *RETRIEVED):
                raise PacsError(f"C-MOVE falló / failed: 0x{int(status.Status):04X}")
            if status.Status in RETRIEVED:
                completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
                if int(status.get("NumberOfFailedSuboperations", 0) or 0):
                    log.warning("C-MOVE: %s suboperaciones fallidas / failed sub-operations", status.NumberOfFailedSuboperations)
    finally:
        assoc.release()
    return completed

"""The Storage Commitment SCP on the wire: N-ACTION in, N-EVENT-REPORT out (PS3.4 J.3.3).

The N-ACTION is answered at once (the request is accepted); the decision is then reported by
N-EVENT-REPORT from a worker thread, once the N-ACTION response is out: on the same association
when the modality keeps it open, otherwise on a new association to the modality's address in
``MDD_DICOM_DESTINATIONS`` (found by its calling AE title), where we propose the SCP role of the
SOP class in SCP/SCU role selection, as J.3.3.1.2 asks. A report that cannot be delivered is
retried a few times with backoff, then logged as an error for a person to follow up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import build_role, evt
from pynetdicom.dimse_messages import N_ACTION_RSP
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from shared.dicom_network import DicomPeerError, associate, describe, new_ae
from shared.dicom_vocabulary import DimseStatus
from shared.settings import Settings
from services.ingest.commitment import CommitmentResult, Reference

log = logging.getLogger("mdd.ingest.commitment")
#: The well-known SOP Instance of the Storage Commitment Push Model SOP Class.
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
REPORT_ATTEMPTS = 4
REPORT_BACKOFF_SECONDS = 1.0
RESPONSE_WAIT_SECONDS = 10.0

Committer = Callable[[str, str, list[Reference]], CommitmentResult]
"""Given the requester's hospital, the Transaction UID and the references: the decision."""


def event_information(result: CommitmentResult) -> Dataset:
    """The N-EVENT-REPORT Event Information of a decision (Table J.3-2)."""
    ds = Dataset()
    ds.TransactionUID = result.transaction_uid
    if result.committed:
        ds.ReferencedSOPSequence = [_item(reference) for reference in result.committed]
    if result.failed:
        ds.FailedSOPSequence = []
        for reference, reason in result.failed:
            item = _item(reference)
            item.FailureReason = int(reason)
            ds.FailedSOPSequence.append(item)
    return ds


def _item(reference: Reference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_instance_uid
    return item


class StorageCommitmentScp:
    """N-ACTION handler and report sender, bound to the ingest's decision function."""

    def __init__(self, settings: Settings, committer: Committer) -> None:
        self.settings = settings
        self.committer = committer
        self._responses: dict[tuple[int, int], threading.Event] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        """The pynetdicom event handlers to register on the SCP."""
        return [(evt.EVT_N_ACTION, self.handle_action), (evt.EVT_DIMSE_SENT, self.handle_sent)]

    def handle_action(self, event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
        """N-ACTION: accept a well-formed request for the well-known instance; decide and report later."""
        request = event.request
        status = Dataset()
        if str(request.RequestedSOPClassUID) != StorageCommitmentPushModel or event.action_type != 1:
            status.Status = DimseStatus.PROCESSING_FAILURE
            status.ErrorComment = "Solo Action Type 1 / only Action Type ID 1"
            return status, None
        try:
            info = event.action_information
            transaction_uid = str(info.TransactionUID)
            references = [
                Reference(str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID)) for item in info.ReferencedSOPSequence
            ]
        except Exception as exc:  # a request without its Transaction UID or references cannot be answered
            log.warning("N-ACTION ilegible / unreadable N-ACTION: %r", exc)
            status.Status = 0x0120  # missing attribute
            status.ErrorComment = "Falta TransactionUID o ReferencedSOPSequence / missing attributes"
            return status, None
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        responded = threading.Event()
        with self._lock:
            self._responses[(id(event.assoc), int(request.MessageID))] = responded
        threading.Thread(
            target=self._decide_and_report,
            args=(event.assoc, calling_ae, transaction_uid, references, responded),
            name=f"commitment-{transaction_uid[-12:]}",
            daemon=True,
        ).start()
        log.info("Compromiso solicitado / commitment requested by %s: %d instancias, %s", calling_ae, len(references), transaction_uid)
        status.Status = DimseStatus.SUCCESS
        return status, None

    def handle_sent(self, event: evt.Event) -> None:
        """EVT_DIMSE_SENT: note when an N-ACTION response has gone out, so the report can follow it."""
        if not isinstance(event.message, N_ACTION_RSP):
            return
        key = (id(event.assoc), int(event.message.command_set.MessageIDBeingRespondedTo))
        with self._lock:
            responded = self._responses.pop(key, None)
        if responded is not None:
            responded.set()

    def _decide_and_report(
        self, assoc: Any, calling_ae: str, transaction_uid: str, references: list[Reference], responded: threading.Event
    ) -> None:
        hospital_id = self.settings.hospital_for_calling_ae(calling_ae)
        try:
            result = self.committer(hospital_id, transaction_uid, references)
        except Exception:
            log.exception("Compromiso sin decidir / commitment could not be decided: %s", transaction_uid)
            result = CommitmentResult(transaction_uid, failed=[(r, DimseStatus.PROCESSING_FAILURE) for r in references])
        info = event_information(result)
        responded.wait(RESPONSE_WAIT_SECONDS)
        if assoc.is_established and self._send(assoc, info, result.event_type):
            log.info("Compromiso reportado en la misma asociación / reported on the same association: %s", transaction_uid)
            return
        destination = self.settings.dicom_destinations.get(calling_ae)
        if destination is None:
            log.error(
                "No se puede reportar el compromiso %s: %s no está en MDD_DICOM_DESTINATIONS / cannot report, unknown address",
                transaction_uid, calling_ae,
            )
            return
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                ae = new_ae(self.settings.ae_title, self.settings)
                ae.add_requested_context(StorageCommitmentPushModel)
                role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
                report = associate(ae, destination, self.settings, ext_neg=[role])
                try:
                    if self._send(report, info, result.event_type):
                        log.info("Compromiso reportado / commitment reported to %s: %s", describe(destination), transaction_uid)
                        return
                finally:
                    if report.is_established:
                        report.release()
            except DicomPeerError as exc:
                log.warning("Reporte de compromiso fallido %d/%d: %s", attempt, REPORT_ATTEMPTS, exc)
            time.sleep(REPORT_BACKOFF_SECONDS * 2 ** (attempt - 1))
        log.error("Reporte de compromiso no entregado / commitment report not delivered: %s to %s", transaction_uid, describe(destination))

    @staticmethod
    def _send(assoc: Any, info: Dataset, event_type: int) -> bool:
        try:
            status, _ = assoc.send_n_event_report(info, event_type, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE)
        except Exception as exc:  # e.g. the peer released the association meanwhile, or refused the role
            log.info("N-EVENT-REPORT no enviado / not sent: %r", exc)
            return False
        return bool(status) and int(status.get("Status", 0xFFFF)) == DimseStatus.SUCCESS

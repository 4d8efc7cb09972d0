"""The Storage Commitment SCP on the wire: N-ACTION in, N-EVENT-REPORT out (PS3.4 J.3.3).

The N-ACTION is answered at once (the request is accepted); the decision is then reported by
N-EVENT-REPORT from a worker thread, once the N-ACTION response is out: on the same association
when the modality keeps it open, otherwise on a new association to the modality's address in
``MDD_DICOM_DESTINATIONS`` (found by its calling AE title), where we propose the SCP role of the
SOP class in SCP/SCU role selection, as J.3.3.1.2 asks. Each decision is written to
``ingest_commitment_report`` before its first try: a report the modality could not take (it is
away, or ingest was killed) is sent again by the resend task, with capped backoff, until it is
delivered, also after a restart and from whichever replica holds the task's lease.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

from pydicom.dataset import Dataset
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from pynetdicom import build_role, evt
from pynetdicom.dimse_messages import N_ACTION_RSP
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from shared.dicom_network import DicomPeerError, associate, describe, new_ae
from shared.dicom_uids import uid_problem
from shared.dicom_vocabulary import DimseStatus
from shared.events import utc_now
from shared.reliability.claims import SENDING, SENT, ClaimLedger
from shared.reliability.lease import LeaderLease
from shared.reliability.periodic import PeriodicTask
from shared.reliability.retry import dependency_backoff
from shared.settings import DicomDestination, Settings
from services.ingest.commitment import CommitmentResult, Reference
from services.ingest.tables import PendingCommitmentReport, commitment_report_id

log = logging.getLogger("mdd.ingest.commitment")
#: The well-known SOP Instance of the Storage Commitment Push Model SOP Class.
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
RESPONSE_WAIT_SECONDS = 10.0
RESEND_INTERVAL_SECONDS = 5.0
REPORT_LEASE_SECONDS = 120.0  # the wait for the N-ACTION response and two association attempts
RESEND_LEASE = "ingest-commitment-reports"
KEEP_DELIVERED = timedelta(days=7)

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

    def __init__(self, settings: Settings, committer: Committer, engine: Engine) -> None:
        self.settings = settings
        self.committer = committer
        self.engine = engine
        # The first tries run on the association's thread; past this lease a crash hands the report to the resend task.
        self.claims = ClaimLedger(engine, PendingCommitmentReport, "report_id", uuid4().hex, REPORT_LEASE_SECONDS)
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
        if problem := uid_problem(transaction_uid):  # it becomes part of a key: PS3.5 UIDs only
            status.Status = DimseStatus.INVALID_ATTRIBUTE_VALUE
            status.ErrorComment = f"TransactionUID: {problem}"[:64]
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
        report_id = self._record(hospital_id, transaction_uid, calling_ae, result.event_type, info)
        responded.wait(RESPONSE_WAIT_SECONDS)
        if assoc.is_established and self._send(assoc, info, result.event_type):
            self._delivered(report_id)
            log.info("Compromiso reportado en la misma asociación / reported on the same association: %s", transaction_uid)
            return
        self._report_on_a_new_association(report_id, calling_ae, info, result.event_type)

    def _report_on_a_new_association(self, report_id: str, calling_ae: str, info: Dataset, event_type: int,
                                     retries: int = 0) -> bool:
        """One try on a new association; a report the modality did not take is postponed (claim given back)."""
        transaction_uid = str(info.TransactionUID)
        destination = self.settings.dicom_destinations.get(calling_ae)
        if destination is None:
            problem = f"{calling_ae} no está en MDD_DICOM_DESTINATIONS / unknown address"
            log.error("No se puede reportar el compromiso %s: %s", transaction_uid, problem)
        else:
            try:
                if self._deliver(destination, info, event_type):
                    self._delivered(report_id)
                    log.info("Compromiso reportado / commitment reported to %s: %s", describe(destination), transaction_uid)
                    return True
                problem = "el par no aceptó el N-EVENT-REPORT / the peer did not take the N-EVENT-REPORT"
            except DicomPeerError as exc:
                problem = str(exc)
            log.warning("Reporte de compromiso pendiente, se reintentará / commitment report pending, will retry: %s (%s)",
                        transaction_uid, problem)
        # The modality being away is waited for: no attempt is spent, the resend task tries again.
        self.claims.postpone(report_id, dependency_backoff().delay(retries + 1), problem, spend_attempt=False)
        return False

    def _deliver(self, destination: DicomDestination, info: Dataset, event_type: int) -> bool:
        ae = new_ae(self.settings.ae_title, self.settings)
        ae.add_requested_context(StorageCommitmentPushModel)
        role = build_role(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        report = associate(ae, destination, self.settings, ext_neg=[role])
        try:
            return self._send(report, info, event_type)
        finally:
            if report.is_established:
                report.release()

    def _record(self, hospital_id: str, transaction_uid: str, calling_ae: str, event_type: int, info: Dataset) -> str:
        """Write the decision, claimed by this process for its first tries (a crash lets its lease run out);
        its report id."""
        report_id = commitment_report_id(hospital_id, calling_ae, transaction_uid)
        now = utc_now()
        with Session(self.engine) as session:
            session.merge(PendingCommitmentReport(
                report_id=report_id, hospital_id=hospital_id, transaction_uid=transaction_uid, calling_ae=calling_ae,
                event_type=event_type,
                event_information=info.to_json(), status=SENDING, owner=self.claims.owner,
                lease_until=now + self.claims.lease, updated_at=now,
            ))
            session.commit()
        return report_id

    def _delivered(self, report_id: str) -> None:
        self.claims.settle(report_id, SENT)

    def resend_due(self, limit: int = 20) -> int:
        """Send the reports that are due again (after a failed try, or taken over from a process that died);
        how many were delivered. Delivered reports older than ``KEEP_DELIVERED`` are pruned."""
        delivered = 0
        for key in self.claims.due(limit):
            claim = self.claims.claim(key)
            if claim is None:
                continue
            with Session(self.engine) as session:
                row = session.get(PendingCommitmentReport, key)
            if row is None:
                continue
            info = Dataset.from_json(row.event_information)
            delivered += self._report_on_a_new_association(key, row.calling_ae, info, row.event_type, claim.retries)
        with Session(self.engine) as session:
            session.execute(delete(PendingCommitmentReport).where(
                col(PendingCommitmentReport.status) == SENT, col(PendingCommitmentReport.updated_at) < utc_now() - KEEP_DELIVERED))
            session.commit()
        return delivered

    def periodic(self) -> PeriodicTask:
        """The resend task, run by the replica that holds its lease."""
        return PeriodicTask(
            "commitment-reports", lambda: asyncio.to_thread(self.resend_due), RESEND_INTERVAL_SECONDS,
            lease=LeaderLease(self.engine, RESEND_LEASE, ttl_seconds=3 * RESEND_INTERVAL_SECONDS),
        )

    @staticmethod
    def _send(assoc: Any, info: Dataset, event_type: int) -> bool:
        try:
            status, _ = assoc.send_n_event_report(info, event_type, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE)
        except Exception as exc:  # e.g. the peer released the association meanwhile, or refused the role
            log.info("N-EVENT-REPORT no enviado / not sent: %r", exc)
            return False
        return bool(status) and int(status.get("Status", 0xFFFF)) == DimseStatus.SUCCESS

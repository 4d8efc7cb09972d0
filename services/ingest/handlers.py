"""DICOM event handlers: turn an association request, C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET or
N-ACTION into a domain call and a status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context, events
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from shared.dicom_vocabulary import DimseStatus
from shared.settings import Settings
from shared.dicom_network import client_tls_context
from services.ingest import query
from services.ingest.adapters.commitment import StorageCommitmentScp
from services.ingest.adapters.scp import received_instance
from services.ingest.commitment import CommitmentResult, Reference, commit
from services.ingest.query import Holdings, Model
from services.ingest.admission import admit, free_space
from services.ingest.intake import Ingest
from services.ingest.validation import InstanceTooLarge

log = logging.getLogger("mdd.ingest.scp")


def handle_echo(event: events.Event) -> int:
    """C-ECHO: verification always succeeds while the SCP is up."""
    return DimseStatus.SUCCESS


def make_request_handler(settings: Settings) -> Callable[[events.Event], None]:
    """Association-request handler: refuses unknown senders and works only above the space reserve."""

    def handle_requested(event: events.Event) -> None:
        requestor = event.assoc.requestor
        calling_ae = str(requestor.primitive.calling_ae_title).strip()
        decision = admit(settings, calling_ae, requestor.address, free_space(settings))
        if not decision.accepted:
            log.warning("Asociación rechazada / association rejected from %s (%s): %s", calling_ae, requestor.address, decision.reason)
            # The same steps pynetdicom's own negotiation takes when it rejects an association.
            event.assoc.acse.send_reject(decision.result, decision.source, decision.diagnostic)
            event.assoc.is_rejected = True
            event.assoc.kill()

    return handle_requested


def make_store_handler(ingest: Ingest) -> Callable[[events.Event], Dataset]:
    """C-STORE handler bound to an ``Ingest``: the instance is streamed to the store as received."""

    def handle_store(event: events.Event) -> Dataset:
        status = Dataset()
        try:
            received = received_instance(event)
        except InstanceTooLarge as exc:  # counted while it arrived, not kept
            log.warning("C-STORE rechazado / refused: %s", exc)
            status.Status = DimseStatus.OUT_OF_RESOURCES
            status.ErrorComment = str(exc)[:64]
            return status
        except Exception as exc:  # a malformed P-DATA stream must not take the SCP down
            log.warning("C-STORE ilegible / unreadable C-STORE: %r", exc)
            status.Status = DimseStatus.CANNOT_UNDERSTAND
            status.ErrorComment = "DICOM ilegible / unreadable"
            return status
        outcome = ingest.accept(
            received.payload,
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            expected_sop_class=str(event.context.abstract_syntax),
            digest=received.digest,
            upload=received.upload,
        )
        status.Status = outcome.status
        if not outcome.ok:
            log.warning("C-STORE rechazado 0x%04X: %s", outcome.status, outcome.message)
            status.ErrorComment = outcome.message[:64]
        return status

    return handle_store


# --- Query/Retrieve SCP: C-FIND, C-MOVE, C-GET (domain in services.ingest.query).

_MODELS: dict[str, Model] = {
    PatientRootQueryRetrieveInformationModelFind: "PATIENT",
    PatientRootQueryRetrieveInformationModelMove: "PATIENT",
    PatientRootQueryRetrieveInformationModelGet: "PATIENT",
    StudyRootQueryRetrieveInformationModelFind: "STUDY",
    StudyRootQueryRetrieveInformationModelMove: "STUDY",
    StudyRootQueryRetrieveInformationModelGet: "STUDY",
}


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def make_find_handler(settings: Settings, holdings: Holdings) -> Callable[[events.Event], Iterator[tuple[object, Dataset | None]]]:
    """C-FIND handler: matches within the calling AE's hospital, one pending response per match."""

    def handle_find(event: events.Event) -> Iterator[tuple[object, Dataset | None]]:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        model = _MODELS[str(event.request.AffectedSOPClassUID)]
        try:
            matches = query.find(holdings, event.identifier, model, settings.hospital_for_calling_ae(calling_ae), settings.ae_title)
            for answer in matches:
                if event.is_cancelled:
                    yield DimseStatus.CANCEL, None
                    return
                yield DimseStatus.PENDING, answer
        except query.IdentifierError as exc:
            log.warning("C-FIND rechazado / refused from %s: %s", calling_ae, exc)
            yield _failure(DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
            return
        except Exception:
            log.exception("C-FIND fallido / failed")
            yield _failure(DimseStatus.UNABLE_TO_PROCESS, "Error interno / internal error"), None
            return
        yield DimseStatus.SUCCESS, None

    return handle_find


def _retrieved(holdings: Holdings, event: events.Event, settings: Settings) -> tuple[list[query.Located] | None, Dataset | None]:
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    model = _MODELS[str(event.request.AffectedSOPClassUID)]
    try:
        return query.retrieve(holdings, event.identifier, model, settings.hospital_for_calling_ae(calling_ae)), None
    except query.IdentifierError as exc:
        log.warning("Recuperación rechazada / retrieve refused from %s: %s", calling_ae, exc)
        return None, _failure(DimseStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc))
    except Exception:
        log.exception("Recuperación fallida / retrieve failed")
        return None, _failure(DimseStatus.UNABLE_TO_PROCESS, "Error interno / internal error")


def _sub_operations(holdings: Holdings, event: events.Event, located: list[query.Located]) -> Iterator[tuple[object, Dataset | None]]:
    for item in located:
        if event.is_cancelled:
            yield DimseStatus.CANCEL, None
            return
        try:
            instance = query.read_instance(holdings, item)
        except Exception as exc:  # the object cannot be read: that sub-operation fails, the others go on
            log.error("Instancia ilegible / unreadable instance %s: %r", item.row.object_key, exc)
            yield DimseStatus.UNABLE_TO_PROCESS, None
            continue
        yield DimseStatus.PENDING, instance


def make_move_handler(settings: Settings, holdings: Holdings) -> Callable[[events.Event], Iterator[object]]:
    """C-MOVE handler: to a move destination configured in ``MDD_DICOM_DESTINATIONS``, in the stored transfer syntax."""

    def handle_move(event: events.Event) -> Iterator[object]:
        move_destination = event.move_destination
        if isinstance(move_destination, bytes):
            move_destination = move_destination.decode("ascii", "replace")
        destination = settings.dicom_destinations.get(str(move_destination).strip())
        located, failure = _retrieved(holdings, event, settings)
        if destination is None:
            log.warning("Destino de C-MOVE desconocido / unknown move destination: %r", event.move_destination)
            yield None, None
            return
        if failure is not None or located is None:
            yield destination.host, destination.port
            yield 0
            return
        options: dict[str, object] = {"contexts": _contexts(located), "max_pdu": settings.dicom_max_pdu}
        if destination.tls:
            options["tls_args"] = (client_tls_context(settings), None)
        yield destination.host, destination.port, options
        yield len(located)
        yield from _sub_operations(holdings, event, located)

    return handle_move


def make_get_handler(settings: Settings, holdings: Holdings) -> Callable[[events.Event], Iterator[object]]:
    """C-GET handler: the instances go back on the same association (the requester negotiated the SCP role)."""

    def handle_get(event: events.Event) -> Iterator[object]:
        located, failure = _retrieved(holdings, event, settings)
        if failure is not None or located is None:
            yield 1
            yield failure, None
            return
        yield len(located)
        yield from _sub_operations(holdings, event, located)

    return handle_get


def _contexts(located: list[query.Located]) -> list[PresentationContext]:
    """One presentation context per SOP class and stored transfer syntax of the instances to move (at most 128):
    instances go out as they were received."""
    wanted = sorted({(item.row.sop_class_uid, item.row.transfer_syntax_uid or ExplicitVRLittleEndian) for item in located})
    return [build_context(sop_class, [syntax]) for sop_class, syntax in wanted][:128]


# --- Storage Commitment SCP (domain in services.ingest.commitment, wire in adapters.commitment).


def make_commitment_scp(settings: Settings, holdings: Holdings) -> StorageCommitmentScp:
    """The Storage Commitment SCP bound to what ingest holds."""

    def decide(hospital_id: str, transaction_uid: str, references: list[Reference]) -> CommitmentResult:
        return commit(holdings.engine, holdings.store, holdings.dicom_bucket, hospital_id, transaction_uid, references)

    return StorageCommitmentScp(settings, decide, holdings.engine)

"""DICOM event handlers: turn an association request, C-ECHO or C-STORE into a domain call."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import events

from shared.dicom_vocabulary import DimseStatus
from shared.settings import Settings
from services.ingest.adapters.scp import received_instance
from services.ingest.admission import admit, free_space
from services.ingest.intake import Ingest

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

"""DICOM event handlers: turn a C-ECHO or C-STORE into a domain call and a status code."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom import events

from services.ingest.intake import CANNOT_UNDERSTAND, Ingest

log = logging.getLogger("mdd.ingest.scp")


def handle_echo(event: events.Event) -> int:
    """C-ECHO: verification always succeeds while the SCP is up."""
    return 0x0000


def make_store_handler(ingest: Ingest) -> Callable[[events.Event], Dataset]:
    """C-STORE handler bound to an ``Ingest``: the instance is stored exactly as received."""

    def handle_store(event: events.Event) -> Dataset:
        status = Dataset()
        try:
            encoded = event.encoded_dataset()
        except Exception as exc:  # a malformed P-DATA stream must not take the SCP down
            log.warning("C-STORE ilegible / unreadable C-STORE: %r", exc)
            status.Status = CANNOT_UNDERSTAND
            status.ErrorComment = "DICOM ilegible / unreadable"
            return status
        outcome = ingest.accept(
            encoded,
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
            expected_sop_class=str(event.context.abstract_syntax),
        )
        status.Status = outcome.status
        if not outcome.ok:
            log.warning("C-STORE rechazado 0x%04X: %s", outcome.status, outcome.message)
            status.ErrorComment = outcome.message[:64]
        return status

    return handle_store

"""Sending a study by C-STORE, as a modality would (used by ``mdd demo``)."""

from __future__ import annotations

from pynetdicom import AE

from shared.synth import SyntheticStudy


def send_study(study: SyntheticStudy, host: str, port: int, called_ae: str, calling_ae: str) -> list[int]:
    """C-STORE every view of a study in one association; returns the status of each."""
    ae = AE(ae_title=calling_ae)
    for sop_class in {str(view.dataset.SOPClassUID) for view in study.views}:
        ae.add_requested_context(sop_class)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise ConnectionError(f"Asociación rechazada o sin respuesta / association refused: {host}:{port} {called_ae}")
    try:
        statuses = []
        for view in study.views:
            status = assoc.send_c_store(view.dataset)
            statuses.append(int(status.Status) if "Status" in status else 0xFFFF)
        return statuses
    finally:
        assoc.release()

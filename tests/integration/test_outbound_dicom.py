"""Outbound DICOM: results over DICOM TLS with our implementation identity and PDU size, and the poller's C-MOVE."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import trustme
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from shared.db import init_db
from shared.dicom_uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from shared.runtime import build_context
from shared.settings import DicomDestination, Settings
from shared.synth import make_study
from services.ingest.poller import PacsPoller
from services.notify.pacs_results import KINDS, PacsResultRecord, PacsResults
from services.notify.result_codes import RESULTS_MANUFACTURER
from tests.conftest import free_port
from tests.e2e.harness import storescu
from tests.integration.test_pacs_results import remove_from_orthanc
from tests.integration.conftest import ingest_running
from tests.unit.test_pacs_results import inferred, store_study


async def test_results_reach_a_tls_pacs_with_our_identity_and_max_pdu(settings: Settings, tmp_path: Path) -> None:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_context)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    received: list[tuple[str, str, str, int]] = []

    def on_store(event: evt.Event) -> int:
        requestor = event.assoc.requestor
        received.append((str(event.dataset.Manufacturer), requestor.implementation_class_uid, requestor.implementation_version_name,
                         requestor.maximum_length))
        return 0x0000

    pacs = AE(ae_title="PACS_TLS")
    for sop_class in ("1.2.840.10008.5.1.4.1.1.88.50", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"):
        pacs.add_supported_context(sop_class, ExplicitVRLittleEndian)
    port = free_port()
    server = pacs.start_server(("127.0.0.1", port), block=False, ssl_context=server_context, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        study = make_study(seed=16_006, finding="mass", hospital_id="HGE-ENSENADA")
        destination = DicomDestination(host="127.0.0.1", port=port, ae_title="PACS_TLS", tls=True)
        configured = settings.model_copy(update={"results_pacs": {"HGE-ENSENADA": destination}, "dicom_tls_ca": tmp_path / "ca.pem",
                                                 "dicom_max_pdu": 65536})
        ctx = build_context(configured)
        init_db(ctx.engine, [PacsResultRecord])
        store_study(ctx, study)
        [sent] = await PacsResults(ctx).on_inferred(inferred(study))
    finally:
        server.shutdown()
    assert sent.status == "sent" and len(received) == len(KINDS)
    assert {r[0] for r in received} == {RESULTS_MANUFACTURER}
    assert {r[1:] for r in received} == {(IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, 65536)}


async def test_the_poller_can_retrieve_by_c_move_to_our_own_scp(orthanc, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study = make_study(seed=16_007, hospital_id="HOSP-PACS")
    study.save(tmp_path / "study")
    assert (await asyncio.to_thread(storescu, tmp_path / "study", orthanc.dicom_port, orthanc.ae_title)).count("(Success)") == 4
    polling = settings.model_copy(
        update={"pacs_host": "127.0.0.1", "pacs_port": orthanc.dicom_port, "pacs_ae_title": orthanc.ae_title, "pacs_hospital_id": "HGE-ENSENADA",
                "pacs_lookback_days": 365 * 10, "pacs_retrieve": "C-MOVE"}
    )
    api = orthanc.http_url
    try:
        async with ingest_running(polling) as ctx:
            httpx.put(f"{api}/modalities/MDD", json={"AET": "MDD", "Host": "127.0.0.1", "Port": ctx.settings.dicom_port}).raise_for_status()
            from services.ingest.__main__ import IngestComponent

            poller = PacsPoller(IngestComponent(ctx).ingest)
            assert await asyncio.to_thread(poller.poll_once) >= 4  # sub-operations completed (other studies in the PACS too)
            await ctx.bus.drain()
            stored = [json.loads(p) for _, p in ctx.bus.sent if json.loads(p)["event_type"] == "instance.stored"]
            # Delivery is at least once with deterministic ids (a relay may publish a row whose flush is slow):
            # what consumers see, after de-duplication by event id, is one event per instance.
            ours = list({e["event_id"]: e for e in stored if e["study_uid"] == study.study_uid}.values())
            assert len(ours) == 4 and {e["hospital_id"] for e in ours} == {"HGE-ENSENADA"}
            assert {e["calling_ae"] for e in ours} == {orthanc.ae_title}  # they came to our SCP, sent by the PACS
    finally:
        httpx.delete(f"{api}/modalities/MDD")
        remove_from_orthanc(api, study.study_uid)

"""Issue's "done when": one suspicious study's ``study.inferred`` gives an SMS, an e-mail, an SR and a
secondary capture in the hospital's PACS — everything notify does, wired as the service wires it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage

from shared.runtime import build_context
from shared.settings import DicomDestination, Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.__main__ import register
from tests.conftest import free_port
from tests.e2e.harness import SmtpSink, body_text, smtp_sink, storescu
from tests.integration.test_notify_channels import ONCO_PHONE, RADIO_PHONE, LoopbackHttp, loopback_http, notify_settings, result
from tests.integration.test_pacs_results import orthanc_study, remove_from_orthanc
from tests.unit.test_pacs_results import store_study


@pytest.fixture
def channel_servers() -> Iterator[tuple[SmtpSink, LoopbackHttp]]:
    """A real SMTP server and the loopback SMS gateway."""
    with smtp_sink(free_port()) as sink, loopback_http() as http:
        yield sink, http


@pytest.fixture
def suspicious_study(orthanc) -> Iterator[SyntheticStudy]:  # type: ignore[no-untyped-def]
    """A study of this test alone, removed from the shared PACS afterwards."""
    study = make_study(seed=46_605, finding="mass", finding_laterality="L", hospital_id="HGE")
    yield study
    remove_from_orthanc(orthanc.http_url, study.study_uid)


async def test_a_suspicious_study_reaches_phones_mailboxes_and_the_pacs(  # type: ignore[no-untyped-def]
    orthanc, suspicious_study: SyntheticStudy, settings: Settings, channel_servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path
) -> None:
    study = suspicious_study
    folder = tmp_path / "estudio"
    study.save(folder)
    sent_by_modality = await asyncio.to_thread(storescu, folder, orthanc.dicom_port, orthanc.ae_title, "MAMO_SALA1")
    assert sent_by_modality.count("Received Store Response (Success)") == 4  # the hospital's PACS has the study

    sink, http = channel_servers
    pacs = DicomDestination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    configured = notify_settings(settings, sink, http, tmp_path, results_pacs={"HGE": pacs})
    ctx = build_context(configured)
    store_study(ctx, study)  # what ingest stored
    register(ctx)
    await ctx.bus.start()
    try:
        await ctx.bus.publish(result(study, "RED"))
        await ctx.bus.drain()  # type: ignore[attr-defined]
    finally:
        await ctx.bus.stop()

    assert sorted(r.form()["To"] for r in http.sms()) == [ONCO_PHONE, RADIO_PHONE]
    [mail] = sink.to("onco@hge.example.mx")
    assert "ROJO" in mail["Subject"] and "0.93" in body_text(mail)
    in_pacs = await asyncio.to_thread(orthanc_study, orthanc.http_url, study.study_uid)
    classes = sorted(str(tags["SOPClassUID"]) for tags in in_pacs.values())
    assert classes.count(ComprehensiveSRStorage) == 1 and classes.count(SecondaryCaptureImageStorage) == 1
    assert classes.count(MammographyCADSRStorage) == 1
    assert len(in_pacs) == 7  # the four views the modality sent, the CAD SR, the SR and the mosaic, in one study

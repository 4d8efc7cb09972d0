"""AI results back to a real PACS (Orthanc): the CAD SR, the SR and the mosaic land in the original study, once,
and a changed result is sent again; what Orthanc stored passes dciodvfy and dcmtk reads its SRs."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydicom.uid import ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage

from shared.events import BreastResult, StudyInferred, producer
from shared.runtime import ServiceContext, build_context
from shared.settings import DicomDestination, Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.mosaic import LIGHT_RGB, MOSAIC_COLS, MOSAIC_ROWS
from services.notify.pacs_results import NOT_VALIDATED, register_pacs_results
from tests.unit.test_pacs_results import store_study
from tests.e2e.harness import storescu
from tests.validators import dciodvfy, dsrdump

DISCLAIMER = "Modelo de demostración entrenado con fantomas sintéticos; no es un dispositivo clínico. / Demonstration model."


def red_result(study: SyntheticStudy) -> StudyInferred:
    return StudyInferred(
        study_uid=study.study_uid,
        hospital_id=study.hospital_id,
        correlation_id="corr-pacs",
        producer=producer("infer"),
        accession_number=study.accession_number,
        breasts=[
            BreastResult(laterality="R", malignancy_score=0.07, birads=1, density="B", views_used=["CC", "MLO"]),
            BreastResult(laterality="L", malignancy_score=0.93, birads=5, density="C", views_used=["CC", "MLO"]),
        ],
        triage_light="RED",
        triage_reason="Sospechoso: mama izquierda / suspicious: left breast",
        model_name="twoview-compactcnn",
        model_version="0.1.0",
        model_trained=True,
        model_trained_on="Fantomas sintéticos / synthetic phantoms",
        disclaimer=DISCLAIMER,
    )


def orthanc_study(http_url: str, study_uid: str) -> dict[str, dict]:
    """Simplified tags of every instance Orthanc holds for the study, by SOP Instance UID."""
    [match] = [m for m in httpx.post(f"{http_url}/tools/lookup", content=study_uid).json() if m["Type"] == "Study"]
    instances = httpx.get(f"{http_url}/studies/{match['ID']}/instances").json()
    tags = {}
    for instance in instances:
        simplified = httpx.get(f"{http_url}/instances/{instance['ID']}/simplified-tags").json()
        simplified["_orthanc_id"] = instance["ID"]
        tags[simplified["SOPInstanceUID"]] = simplified
    return tags


async def handle(ctx: ServiceContext, event: StudyInferred) -> list[dict]:
    """Deliver the event through the in-process bus and return what the handler published."""
    before = len(ctx.bus.sent)
    await ctx.bus.publish(event)
    await ctx.bus.drain()  # type: ignore[attr-defined]
    produced = [json.loads(payload) for _, payload in ctx.bus.sent[before:]]
    return [e for e in produced if e.get("event_type") != "study.inferred"]


@pytest.fixture
def own_study(orthanc) -> Iterator[SyntheticStudy]:  # type: ignore[no-untyped-def]
    """A study of its own (seed), removed from the shared PACS afterwards (other tests poll it for MG studies)."""
    study = make_study(seed=46_603, finding="mass", finding_laterality="L", hospital_id="HGE-ENSENADA")
    yield study
    remove_from_orthanc(orthanc.http_url, study.study_uid)


def remove_from_orthanc(http_url: str, study_uid: str) -> None:
    """Delete a test's study from the shared PACS (other tests poll it for MG studies)."""
    for match in httpx.post(f"{http_url}/tools/lookup", content=study_uid).json():
        if match["Type"] == "Study":
            httpx.delete(f"{http_url}/studies/{match['ID']}")


async def test_sr_and_mosaic_reach_the_original_study_in_orthanc_once(orthanc, own_study: SyntheticStudy, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study = own_study
    folder = tmp_path / "study"
    study.save(folder)
    output = await asyncio.to_thread(storescu, folder, orthanc.dicom_port, orthanc.ae_title, "MAMO_SALA1")
    assert output.count("Received Store Response (Success)") == 4

    results_pacs = DicomDestination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    configured = settings.model_copy(update={"results_pacs": {"HGE-ENSENADA": results_pacs}, "results_calling_ae_title": "MDD_RESULTADOS"})
    ctx = build_context(configured)
    store_study(ctx, study)  # what ingest stored
    register_pacs_results(ctx)
    event = red_result(study)
    await ctx.bus.start()
    try:
        published = await handle(ctx, event)
        redelivered = await handle(ctx, event)
    finally:
        await ctx.bus.stop()

    [sent] = published
    assert sent["event_type"] == "notification.sent" and sent["channel"] == "dicom" and sent["status"] == "sent"
    assert sent["recipient"] == f"{orthanc.ae_title}@127.0.0.1:{orthanc.dicom_port}"
    # A redelivery sends nothing again; it publishes the same report again (same event id), which consumers drop.
    assert [e["event_id"] for e in redelivered] == [sent["event_id"]]

    in_pacs = await asyncio.to_thread(orthanc_study, orthanc.http_url, study.study_uid)
    assert len(in_pacs) == 7  # the four views, the CAD SR, the SR and the mosaic
    [sr] = [t for t in in_pacs.values() if t["SOPClassUID"] == ComprehensiveSRStorage]
    [sc] = [t for t in in_pacs.values() if t["SOPClassUID"] == SecondaryCaptureImageStorage]
    [cad] = [t for t in in_pacs.values() if t["SOPClassUID"] == MammographyCADSRStorage]
    assert sr["StudyInstanceUID"] == sc["StudyInstanceUID"] == cad["StudyInstanceUID"] == study.study_uid
    assert sr["PatientID"] == sc["PatientID"] == cad["PatientID"] == study.patient_id

    # The independent judges read what the PACS stored: no dciodvfy error, and dcmtk renders both SRs.
    for name, tags in (("cad", cad), ("sr", sr), ("sc", sc)):
        stored = tmp_path / f"{name}.dcm"
        stored.write_bytes(httpx.get(f"{orthanc.http_url}/instances/{tags['_orthanc_id']}/file").content)
        errors, _ = await asyncio.to_thread(dciodvfy, stored)
        assert errors == [], f"{name}: {errors}"
    cad_text = await asyncio.to_thread(dsrdump, tmp_path / "cad.dcm")
    assert "Mammography CAD SR Document" in cad_text and '"Mammography CAD Report"' in cad_text
    assert "BI-RADS 5 - Highly suggestive of malignancy" in cad_text and '(123110,DCM,"Artificial Intelligence")' in cad_text
    assert '"Probability of cancer")="93.0"' in cad_text
    sr_text = await asyncio.to_thread(dsrdump, tmp_path / "sr.dcm")
    assert "Comprehensive SR Document" in sr_text and "Imaging Measurement Report" in sr_text
    content = json.dumps(sr["ContentSequence"], ensure_ascii=False)
    assert "0.93" in content and "0.07" in content
    assert "ROJO, sospechoso / RED, suspicious" in content and DISCLAIMER in content and NOT_VALIDATED in content
    assert (int(sc["Rows"]), int(sc["Columns"])) == (MOSAIC_ROWS, MOSAIC_COLS)

    # What a viewer shows for the mosaic: a band in the colour of the triage light on top.
    png = await asyncio.to_thread(httpx.get, f"{orthanc.http_url}/instances/{sc['_orthanc_id']}/preview")
    preview = Image.open(io.BytesIO(png.content)).convert("RGB")
    assert preview.getpixel((3, 3)) == LIGHT_RGB["RED"]

    # A restarted notify service (new process, same database) does not send them again either.
    restarted = build_context(configured)
    register_pacs_results(restarted)
    # A changed result (the model re-read the study) gets new instances, and they are sent.
    changed = red_result(study).model_copy(update={"triage_reason": "Sospechoso tras nueva lectura / suspicious on re-reading"})
    await restarted.bus.start()
    try:
        assert await handle(restarted, red_result(study)) == []
        [resent] = await handle(restarted, changed)
    finally:
        await restarted.bus.stop()
    assert resent["status"] == "sent"
    after = await asyncio.to_thread(orthanc_study, orthanc.http_url, study.study_uid)
    assert len(after) == 10 and set(in_pacs) < set(after)


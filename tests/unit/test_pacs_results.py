"""Results for the hospital's PACS: the SR's content, the mosaic picture, their UIDs, and delivery rules."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage
from sqlmodel import Session, select

from shared.dicom_uids import PROJECT_UID_ROOT
from shared.events import BreastResult, StudyInferred, producer
from shared.runtime import ServiceContext, build_context
from shared.settings import DicomDestination, Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.mosaic import (
    HEADER_ROWS,
    LIGHT_RGB,
    MISSING_RGB,
    MOSAIC_COLS,
    MOSAIC_ROWS,
    TILE_COLS,
    TILE_ROWS,
    display_view,
    view_slot,
)
from services.notify.pacs_results import (
    NOT_VALIDATED,
    SYNTHETIC_LABEL,
    PacsResultRecord,
    PacsResults,
    SourceImagesMissing,
    build_sc,
    build_sr,
    destination_for,
    load_sources,
    register_pacs_results,
    result_uids,
)
from tests.conftest import free_port

DISCLAIMER = "Modelo de demostración entrenado con fantomas sintéticos; no es un dispositivo clínico. / Demonstration model."
TRAINED_ON = "Fantomas sintéticos etiquetados / labelled synthetic phantoms"


def inferred(study: SyntheticStudy, light: str = "RED", version: str = "0.1.0") -> StudyInferred:
    """The event infer publishes for ``study``: a suspicious left breast."""
    return StudyInferred(
        study_uid=study.study_uid,
        hospital_id=study.hospital_id,
        correlation_id="corr-1",
        producer=producer("infer"),
        accession_number=study.accession_number,
        breasts=[
            BreastResult(laterality="R", malignancy_score=0.12, birads=1, density="B", views_used=["CC", "MLO"]),
            BreastResult(laterality="L", malignancy_score=0.91, birads=4, density="C", views_used=["CC", "MLO"]),
        ],
        triage_light=light,  # type: ignore[arg-type]
        triage_reason="Sospechoso: mama izquierda / suspicious: left breast",
        model_name="twoview-compactcnn",
        model_version=version,
        model_trained=True,
        model_trained_on=TRAINED_ON,
        disclaimer=DISCLAIMER,
    )


def headers(study: SyntheticStudy) -> list[Dataset]:
    return [dcmread(io.BytesIO(view.to_bytes()), stop_before_pixels=True) for view in study.views]


def _bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def reread(dataset: Dataset) -> Dataset:
    """What the PACS receives: the object written as a DICOM file and read back."""
    return dcmread(io.BytesIO(_bytes(dataset)))


def content_items(item: Dataset) -> Iterator[Dataset]:
    """Every SR content item below ``item``, depth first."""
    for child in item.get("ContentSequence", []):
        yield child
        yield from content_items(child)


def concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return code.CodingSchemeDesignator, code.CodeValue


def groups_by_laterality(sr: Dataset) -> dict[str, Dataset]:
    groups = [i for i in content_items(sr) if i.ValueType == "CONTAINER" and concept(i) == ("DCM", "125007")]
    by_side: dict[str, Dataset] = {}
    for group in groups:
        [site] = [i for i in content_items(group) if concept(i) == ("SCT", "272741003")]  # Laterality
        by_side[{"24028007": "R", "7771000": "L"}[site.ConceptCodeSequence[0].CodeValue]] = group
    return by_side


def store_study(ctx: ServiceContext, study: SyntheticStudy) -> None:
    for view in study.views:
        ds = view.dataset
        key = f"{study.hospital_id}/{study.study_uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        ctx.store.put_bytes(ctx.settings.bucket_dicom, key, view.to_bytes(), "application/dicom")


@pytest.fixture(scope="module")
def study() -> SyntheticStudy:
    return make_study(seed=4601, finding="mass", finding_laterality="L", hospital_id="HGE-ENSENADA")


def test_sr_reports_each_breast_with_score_birads_density_and_its_source_views(study: SyntheticStudy) -> None:
    sr = reread(build_sr(inferred(study), headers(study)))
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    groups = groups_by_laterality(sr)
    assert set(groups) == {"R", "L"}
    expected = {"R": (0.12, "397140005", "129717001"), "L": (0.91, "397144001", "129718006")}  # BI-RADS 1/4, density B/C
    sop_by_side = {side: {str(v.dataset.SOPInstanceUID) for v in study.views if v.laterality == side} for side in "RL"}
    for side, (score, birads_code, density_code) in expected.items():
        items = list(content_items(groups[side]))
        [probability] = [i for i in items if concept(i) == ("DCM", "111047")]  # Probability of cancer
        assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(score)
        [birads] = [i for i in items if concept(i) == ("DCM", "111005")]  # Assessment Category
        assert birads.ConceptCodeSequence[0].CodeValue == birads_code
        [density] = [i for i in items if concept(i) == ("SCT", "129715009")]  # Breast composition
        assert density.ConceptCodeSequence[0].CodeValue == density_code
        names = {i.TextValue for i in items if concept(i) in (("DCM", "111001"), ("DCM", "111003"))}
        assert names == {"twoview-compactcnn", "0.1.0"}
        sources = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"}
        assert sources == sop_by_side[side]


def test_sr_belongs_to_the_original_study_and_references_all_its_images(study: SyntheticStudy) -> None:
    sr = reread(build_sr(inferred(study), headers(study)))
    assert sr.StudyInstanceUID == study.study_uid
    assert sr.PatientID == study.patient_id and sr.AccessionNumber == study.accession_number
    [evidence] = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == study.study_uid
    referenced = {ref.ReferencedSOPInstanceUID for series in evidence.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}
    assert referenced == {str(v.dataset.SOPInstanceUID) for v in study.views}
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"


def coded_answers(sr: Dataset) -> dict[str, str]:
    """Every CODE item of the project's scheme: question code -> answer code."""
    return {
        i.ConceptNameCodeSequence[0].CodeValue: i.ConceptCodeSequence[0].CodeValue
        for i in content_items(sr)
        if i.ValueType == "CODE" and concept(i)[0] == "99MDD"
    }


def test_sr_codes_both_lights_and_that_the_model_is_a_synthetic_data_demonstration_not_clinically_validated(study: SyntheticStudy) -> None:
    sr = reread(build_sr(inferred(study), headers(study)))
    answers = coded_answers(sr)
    assert answers["MDD0010"] == "MDD0012"  # triage light: RED
    assert answers["MDD0011"] == "MDD0015"  # status light: results available
    assert answers["MDD0001"] == "MDD0002"  # intended use: demonstration, not for clinical use
    assert answers["MDD0003"] == "MDD0004"  # training data: synthetic phantoms
    assert answers["MDD0007"] == "MDD0008"  # clinical validation: none
    texts = [i.TextValue for i in content_items(sr) if i.ValueType == "TEXT" and concept(i)[0] == "99MDD"]
    assert texts == ["Sospechoso: mama izquierda / suspicious: left breast", DISCLAIMER, NOT_VALIDATED]
    assert "no validado clínicamente" in NOT_VALIDATED and "not clinically validated" in NOT_VALIDATED
    [scheme] = sr.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == "99MDD" and scheme.CodingSchemeUID.startswith(PROJECT_UID_ROOT)


def test_an_untrained_model_says_so_in_codes(study: SyntheticStudy) -> None:
    event = inferred(study).model_copy(update={"model_trained": False, "model_trained_on": "sin entrenar / untrained"})
    assert coded_answers(reread(build_sr(event, headers(study))))["MDD0003"] == "MDD0005"


def test_result_uids_are_stable_for_the_same_content_and_new_when_it_changes(study: SyntheticStudy) -> None:
    event = inferred(study)
    again = inferred(study)  # a redelivery is a new object (new event id, new time) with the same content
    assert build_sr(event, headers(study)).SOPInstanceUID == build_sr(again, headers(study)).SOPInstanceUID
    uids = {kind: result_uids(event, kind) for kind in ("cad", "sr", "sc")}
    assert all(result_uids(again, kind) == uids[kind] for kind in uids)
    assert len({u.sop_uid for u in uids.values()} | {u.series_uid for u in uids.values()}) == 6
    assert result_uids(inferred(study, version="0.2.0"), "sr").sop_uid != uids["sr"].sop_uid
    changed = event.model_copy(update={"breasts": [event.breasts[0], event.breasts[1].model_copy(update={"malignancy_score": 0.42})]})
    assert result_uids(changed, "cad").sop_uid != uids["cad"].sop_uid  # new content, new instance ...
    assert result_uids(changed, "cad").series_uid == uids["cad"].series_uid  # ... in the same series
    assert result_uids(inferred(study, light="YELLOW"), "sc").sop_uid != uids["sc"].sop_uid
    other = make_study(seed=4602)
    assert result_uids(inferred(other), "sr").sop_uid != uids["sr"].sop_uid


def test_every_uid_we_create_is_under_the_configured_root(study: SyntheticStudy) -> None:
    root = "1.2.484.999.7."
    event = inferred(study)
    for kind in ("cad", "sr", "sc"):
        uids = result_uids(event, kind, root)
        assert uids.sop_uid.startswith(root) and uids.series_uid.startswith(root) and len(uids.sop_uid) <= 64
    sr = build_sr(event, headers(study), root)
    assert sr.SOPInstanceUID.startswith(root) and sr.SeriesInstanceUID.startswith(root)
    assert result_uids(event, "sr").sop_uid.startswith(PROJECT_UID_ROOT)  # the default root is the project's


@pytest.mark.parametrize("light", ["RED", "YELLOW", "GREEN"])
def test_mosaic_is_a_secondary_capture_of_the_same_study_under_the_light_colour(settings: Settings, study: SyntheticStudy, light: str) -> None:
    ctx = build_context(settings)
    store_study(ctx, study)
    event = inferred(study, light)
    sources = load_sources(ctx.store, settings.bucket_dicom, event, with_views=True)
    sc = reread(build_sc(event, sources))
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.SOPInstanceUID == result_uids(event, "sc").sop_uid
    assert sc.StudyInstanceUID == study.study_uid and sc.PatientID == study.patient_id
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel, sc.PhotometricInterpretation) == (MOSAIC_ROWS, MOSAIC_COLS, 3, "RGB")
    # The lettering names the light, the model and the views, never the patient.
    assert sc.BurnedInAnnotation == "NO" and SYNTHETIC_LABEL in sc.ImageComments
    assert sc.ConversionType == "WSD" and list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert sc.ImageLaterality == "B" and sc.Manufacturer == "Mexican Deep DICOM"
    assert {ref.ReferencedSOPInstanceUID for ref in sc.SourceImageSequence} == {str(v.dataset.SOPInstanceUID) for v in study.views}
    assert all(ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322" for ref in sc.SourceImageSequence)
    pixels = sc.pixel_array
    band = pixels[:HEADER_ROWS].reshape(-1, 3)
    in_colour = np.all(band == np.array(LIGHT_RGB[light], dtype=np.uint8), axis=1).mean()
    assert in_colour > 0.6  # the band is the light's colour except for its lettering
    others = [colour for name, colour in LIGHT_RGB.items() if name != light]
    assert not any(np.all(band == np.array(c, dtype=np.uint8), axis=1).any() for c in others)


def test_mosaic_hangs_right_breast_left_with_chest_walls_back_to_back(settings: Settings, study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    store_study(ctx, study)
    event = inferred(study)
    pixels = reread(build_sc(event, load_sources(ctx.store, settings.bucket_dicom, event, with_views=True))).pixel_array
    gray = pixels[..., 0].astype(np.float64)
    for row in (0, 1):
        top = HEADER_ROWS + row * TILE_ROWS
        right_cell = gray[top : top + TILE_ROWS, :TILE_COLS]
        left_cell = gray[top : top + TILE_ROWS, TILE_COLS:]
        # Breast tissue is brightest against the chest wall: at the middle of the mosaic for both.
        assert right_cell[:, -40:].mean() > right_cell[:, :40].mean()
        assert left_cell[:, :40].mean() > left_cell[:, -40:].mean()
        assert right_cell.std() > 10 and left_cell.std() > 10  # an image, not an empty tile


def test_a_view_stored_mirrored_is_hung_like_the_standard_one(study: SyntheticStudy) -> None:
    view = next(v for v in study.views if (v.laterality, v.view) == ("R", "CC"))
    header = dcmread(io.BytesIO(view.to_bytes()), stop_before_pixels=True)
    expected = display_view(header, view.to_bytes(), ("R", "CC"))
    mirrored = dcmread(io.BytesIO(view.to_bytes()))
    mirrored.PixelData = np.ascontiguousarray(mirrored.pixel_array[:, ::-1]).tobytes()
    mirrored.PatientOrientation = ["A", "L"]  # rows now run towards the nipple
    as_declared = display_view(mirrored, _bytes(mirrored), ("R", "CC"))
    assert np.abs(as_declared.astype(int) - expected.astype(int)).mean() < 1.0
    del mirrored.PatientOrientation  # nothing declared: the tissue shows where the chest wall is
    undeclared = display_view(mirrored, _bytes(mirrored), ("R", "CC"))
    assert np.abs(undeclared.astype(int) - expected.astype(int)).mean() < 1.0
    assert view_slot(header) == ("R", "CC")


def test_sources_skip_our_own_results_and_a_study_without_images_fails_clearly(settings: Settings, study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    event = inferred(study)
    with pytest.raises(SourceImagesMissing, match=study.study_uid):
        load_sources(ctx.store, settings.bucket_dicom, event, with_views=False)
    store_study(ctx, study)
    sc = build_sc(event, load_sources(ctx.store, settings.bucket_dicom, event, with_views=True))
    # A PACS that forwards our mosaic back to ingest must not make it a source of the next one.
    key = f"{study.hospital_id}/{study.study_uid}/{sc.SeriesInstanceUID}/{sc.SOPInstanceUID}.dcm"
    ctx.store.put_bytes(settings.bucket_dicom, key, _bytes(sc), "application/dicom")
    sources = load_sources(ctx.store, settings.bucket_dicom, event, with_views=False)
    assert {h.SOPInstanceUID for h in sources.headers} == {v.dataset.SOPInstanceUID for v in study.views}


def test_a_hospital_destination_overrides_the_default_results_pacs() -> None:
    own = DicomDestination(host="10.1.2.4", port=11112, ae_title="KPACS")
    settings = Settings(results_pacs_host="10.9.9.9", results_pacs_port=104, results_pacs_ae_title="CENTRAL", results_pacs={"HGE-ENSENADA": own})
    assert destination_for(settings, "HGE-ENSENADA") == own
    assert destination_for(settings, "HG-TIJUANA") == DicomDestination(host="10.9.9.9", port=104, ae_title="CENTRAL")
    assert destination_for(Settings(), "HGE-ENSENADA") is None
    parsed = Settings.model_validate({"results_pacs": json.loads('{"H": {"host": "pacs", "port": 4242, "ae_title": "ORTHANC"}}')})
    assert parsed.results_pacs["H"].port == 4242


async def test_without_a_results_pacs_the_results_are_kept_and_nothing_is_sent(settings: Settings, study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    store_study(ctx, study)
    register_pacs_results(ctx)
    await ctx.bus.start()
    try:
        await ctx.bus.publish(inferred(study))
        await ctx.bus.drain()
    finally:
        await ctx.bus.stop()
    folder = f"{study.hospital_id}/{study.study_uid}/"  # the hospital's own folder: another's same UID never meets it
    assert sorted(ctx.store.list_keys(settings.bucket_results, folder)) == [
        f"{folder}cad-sr.dcm", f"{folder}overlay.dcm", f"{folder}sr.dcm"]
    assert [t for t, _ in ctx.bus.sent if t == "mdd.notification.sent"] == []  # nothing was sent anywhere


async def test_a_hospital_without_destination_is_skipped_and_logged_once(settings: Settings, study: SyntheticStudy, caplog: pytest.LogCaptureFixture) -> None:
    configured = settings.model_copy(update={"results_pacs": {"OTRO-HOSPITAL": DicomDestination(host="127.0.0.1", port=free_port(), ae_title="X")}})
    results = PacsResults(build_context(configured))
    with caplog.at_level(logging.INFO, logger="mdd.notify.pacs"):
        assert await results.on_inferred(inferred(study)) == []
        assert await results.on_inferred(inferred(study)) == []
    assert sum("HGE-ENSENADA" in r.getMessage() for r in caplog.records) == 1


class StorageScp:
    """A real DICOM Storage SCP (pynetdicom) playing the results PACS; answers ``status`` to every C-STORE."""

    def __init__(self, port: int, status: int = 0x0000) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.port, self.status, self.stored = port, status, []  # type: ignore[var-annotated]
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event) -> int:  # type: ignore[no-untyped-def]
        if self.status == 0x0000:
            self.stored.append(event.dataset)
        return self.status

    def stop(self) -> None:
        self.server.shutdown()


def results_pacs_at(settings: Settings, port: int) -> Settings:
    """Settings whose results PACS listens on ``port`` of this machine; two attempts, quick retries."""
    return settings.model_copy(update={
        "results_pacs_host": "127.0.0.1", "results_pacs_port": port, "results_pacs_ae_title": "PACS",
        "notify_send_attempts": 2, "notify_backoff_seconds": 0.01,
    })


async def _until(probe, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_pacs_that_is_down_is_waited_for_and_gets_the_results_once_when_it_is_back(
    settings: Settings, study: SyntheticStudy
) -> None:
    from shared.reliability.health import HEALTH

    port = free_port()
    ctx = build_context(results_pacs_at(settings, port))
    store_study(ctx, study)
    register_pacs_results(ctx)
    HEALTH.clear()
    await ctx.bus.start()
    pacs: StorageScp | None = None
    try:
        await ctx.bus.publish(inferred(study))
        # Far more tries than notify_send_attempts go by while the PACS is down: none of them counts.
        await _until(lambda: any(e.waiting == "notify-pacs" and e.dependency.value == "pacs" for e in HEALTH.down()), "the outage noted")
        with Session(ctx.engine) as session:
            assert session.exec(select(PacsResultRecord)).all() == []
        assert not [topic for topic, _ in ctx.bus.sent if topic in ("mdd.dlq", "mdd.study.failed", "mdd.notification.sent")]
        pacs = StorageScp(port)  # the PACS comes back
        await ctx.bus.drain()
    finally:
        await ctx.bus.stop()
        if pacs is not None:
            pacs.stop()
    sent = [(topic, json.loads(payload)) for topic, payload in ctx.bus.sent]
    assert [t for t, _ in sent if t in ("mdd.dlq", "mdd.study.failed")] == []
    [outcome] = [e for t, e in sent if t == "mdd.notification.sent"]
    assert outcome["status"] == "sent" and outcome["channel"] == "dicom"
    assert sorted(str(ds.SOPClassUID) for ds in pacs.stored) == sorted(
        [ComprehensiveSRStorage, MammographyCADSRStorage, SecondaryCaptureImageStorage]
    )
    assert not HEALTH.down()


async def test_a_pacs_that_refuses_the_results_is_retried_then_dead_lettered_and_nothing_is_recorded(
    settings: Settings, study: SyntheticStudy
) -> None:
    port = free_port()
    pacs = StorageScp(port, status=0xA900)  # "data set does not match SOP class": refused, every time
    ctx = build_context(results_pacs_at(settings, port))
    store_study(ctx, study)
    register_pacs_results(ctx)
    await ctx.bus.start()
    try:
        await ctx.bus.publish(inferred(study))
        await ctx.bus.drain()
    finally:
        await ctx.bus.stop()
        pacs.stop()
    sent = {topic: json.loads(payload) for topic, payload in ctx.bus.sent}
    assert sent["mdd.dlq"]["stage"] == "notify-pacs" and sent["mdd.dlq"]["attempts"] == 2
    assert "PacsStoreError" in sent["mdd.dlq"]["error"] and "0xA900" in sent["mdd.dlq"]["error"]
    assert json.loads(sent["mdd.dlq"]["payload"])["study_uid"] == study.study_uid  # re-drivable
    assert sent["mdd.notification.sent"]["status"] == "failed" and sent["mdd.notification.sent"]["channel"] == "dicom"
    assert "mdd.study.failed" not in sent  # the results exist: the study itself did not fail
    with Session(ctx.engine) as session:
        assert session.exec(select(PacsResultRecord)).all() == []


def test_a_view_whose_pixels_cannot_be_decoded_leaves_only_its_tile_out(settings: Settings, study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    store_study(ctx, study)
    broken = next(v for v in study.views if (v.laterality, v.view) == ("L", "MLO"))
    damaged = dcmread(io.BytesIO(broken.to_bytes()))
    damaged.PixelData = b"\x00" * 64  # far shorter than Rows x Columns x 2 bytes
    key = f"{study.hospital_id}/{study.study_uid}/{damaged.SeriesInstanceUID}/{damaged.SOPInstanceUID}.dcm"
    ctx.store.put_bytes(settings.bucket_dicom, key, _bytes(damaged), "application/dicom")
    sources = load_sources(ctx.store, settings.bucket_dicom, inferred(study), with_views=True)
    assert len(sources.headers) == 4  # still referenced by the SR
    assert set(sources.views) == {("R", "CC"), ("L", "CC"), ("R", "MLO")}
    pixels = build_sc(inferred(study), sources).pixel_array
    empty_tile = pixels[HEADER_ROWS + TILE_ROWS + 40 : HEADER_ROWS + 2 * TILE_ROWS - 40, TILE_COLS + 40 : -40]
    assert np.all(empty_tile == np.array(MISSING_RGB, dtype=np.uint8), axis=-1).mean() > 0.9  # "sin imagen / no image"


def test_kept_results_name_our_implementation_in_their_file_meta(settings: Settings, study: SyntheticStudy) -> None:
    from shared.dicom_uids import IMPLEMENTATION_CLASS_UID

    ctx = build_context(settings)
    store_study(ctx, study)
    PacsResults(ctx).build(inferred(study), ["cad", "sr", "sc"])
    for name in ("cad-sr.dcm", "sr.dcm", "overlay.dcm"):
        kept = dcmread(io.BytesIO(ctx.store.get_bytes(settings.bucket_results, f"{study.hospital_id}/{study.study_uid}/{name}")))
        assert kept.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID

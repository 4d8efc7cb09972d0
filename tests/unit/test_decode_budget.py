"""Decoding under a memory budget: the size comes from the header and is refused before anything is allocated."""

from __future__ import annotations

import io

import pydicom
import pytest

from services.preprocess.__main__ import register
from services.status_api import dicomweb_wado as wado
from shared.events import StudyCompleted, StudyFailed, ViewRef, producer
from shared.imaging.display import DECODE_MAX_BYTES, DecodeBudgetExceeded, decoded_bytes, to_display
from shared.imaging.pipeline import preprocess_view
from shared.runtime import build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.corpus import peak_memory, rle_bomb

MB = 1024 * 1024


def test_the_rle_bomb_is_refused_without_allocating_its_pixels(four_view_study: SyntheticStudy) -> None:
    bomb = pydicom.dcmread(io.BytesIO(rle_bomb(four_view_study.views[0])))
    assert decoded_bytes(bomb) == 12000 * 12000 * 2 > DECODE_MAX_BYTES
    with peak_memory() as peak, pytest.raises(DecodeBudgetExceeded, match="would take 288000000 bytes, at most 134217728"):
        preprocess_view(bomb)
    assert peak[0] < 4 * MB, peak


def test_a_good_view_decodes_under_the_budget_and_not_under_a_smaller_one(four_view_study: SyntheticStudy) -> None:
    view = four_view_study.views[0].dataset
    assert to_display(view).shape == (view.Rows, view.Columns)
    with pytest.raises(DecodeBudgetExceeded, match="MDD_DECODE_MAX_BYTES"):
        to_display(view, budget_bytes=decoded_bytes(view) - 1)


def test_wado_refuses_to_decode_past_the_budget(four_view_study: SyntheticStudy) -> None:
    bomb = rle_bomb(four_view_study.views[0])
    with pytest.raises(DecodeBudgetExceeded):
        wado.render(bomb, "image/png")
    native = wado.FrameChoice("native", "application/octet-stream", "application/octet-stream", None)
    with pytest.raises(DecodeBudgetExceeded):
        wado.frames(bomb, [1], native)
    with pytest.raises(DecodeBudgetExceeded):
        wado.transcode(bomb, "1.2.840.10008.1.2.1")
    good = four_view_study.views[0].to_bytes()
    assert wado.render(good, "image/png").startswith(b"\x89PNG")


async def test_preprocess_fails_the_study_with_the_reason(settings: Settings, four_view_study: SyntheticStudy) -> None:
    ctx = build_context(settings)
    view = four_view_study.views[0].dataset
    key = f"HOSP-DEMO/{four_view_study.study_uid}/{view.SeriesInstanceUID}/{view.SOPInstanceUID}.dcm"
    ctx.store.ensure_buckets([settings.bucket_dicom, settings.bucket_derived])
    ctx.store.put_bytes(settings.bucket_dicom, key, rle_bomb(four_view_study.views[0]), "application/dicom")
    failures: list[StudyFailed] = []

    async def watch(event: StudyFailed) -> None:
        failures.append(event)

    register(ctx)
    ctx.bus.subscribe(StudyFailed, watch, service="status_api")
    await ctx.bus.start()
    try:
        await ctx.bus.publish(StudyCompleted(
            study_uid=four_view_study.study_uid, hospital_id="HOSP-DEMO", correlation_id="corr-bomba",
            producer=producer("ingest"), reason="all_views",
            views=[ViewRef(sop_instance_uid=view.SOPInstanceUID, series_instance_uid=view.SeriesInstanceUID, object_key=key)],
        ))
        await ctx.bus.drain()
    finally:
        await ctx.bus.stop()
        ctx.engine.dispose()
    [failed] = failures
    assert failed.stage == "preprocess" and failed.study_uid == four_view_study.study_uid
    assert "would take 288000000 bytes" in failed.reason

"""XCCL, LM and ML views are the CC and MLO of their breast everywhere: at ingest, in preprocessing and in the results."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from shared.events import StudyCompleted
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from services.notify.mosaic import HEADER_ROWS, MISSING_RGB, SLOTS, TILE_COLS, TILE_ROWS
from services.notify.pacs_results import build_sc, load_sources
from services.preprocess.handlers import PreprocessHandlers, study_flags
from tests.e2e.harness import storescu
from tests.integration.conftest import ingest_running
from tests.unit.test_pacs_results import inferred

# (laterality, slot) -> the projection each view is sent as, with its CID 4014 code (SNOMED CT).
SENT_AS = {
    ("R", "CC"): ("XCCL", "399192008", "cranio-caudal exaggerated laterally"),
    ("L", "CC"): ("CC", "399162004", "cranio-caudal"),
    ("R", "MLO"): ("LM", "399352003", "latero-medial"),
    ("L", "MLO"): ("ML", "399260004", "medial-lateral"),
}


def study_of_other_projections() -> SyntheticStudy:
    study = make_study(seed=1607, finding="mass", finding_laterality="R", hospital_id="HOSP-DEMO")
    for view in study.views:
        position, code_value, meaning = SENT_AS[(view.laterality, view.view)]
        view.dataset.ViewPosition = position
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = code_value, "SCT", meaning
        view.dataset.ViewCodeSequence = [code]
    return study


async def test_lm_xccl_and_ml_views_complete_a_study_and_fill_their_slots_everywhere(settings: Settings, tmp_path: Path) -> None:
    study = study_of_other_projections()
    folder = tmp_path / "study"
    study.save(folder)
    # A long quiet period: only the four views themselves can complete the study here.
    async with ingest_running(settings.model_copy(update={"study_quiet_seconds": 600})) as ctx:
        output = await asyncio.to_thread(storescu, folder, ctx.settings.dicom_port)
        assert output.count("Received Store Response (Success)") == 4
        await ctx.bus.drain()
        [completed] = [
            StudyCompleted.model_validate_json(payload)
            for _, payload in ctx.bus.sent
            if json.loads(payload)["event_type"] == "study.completed"
        ]
        assert completed.reason == "all_views"
        slot_of = {str(v.dataset.SOPInstanceUID): (v.laterality, v.view) for v in study.views}
        assert {v.sop_instance_uid: (v.laterality, v.view_position) for v in completed.views} == slot_of

        # Preprocessing sees the same slots, so the study has its four views and no flag says otherwise.
        preprocessed = await PreprocessHandlers(ctx).on_study_completed(completed)
        assert {v.sop_instance_uid: (v.laterality, v.view_position) for v in preprocessed.views} == slot_of
        assert "fewer_than_four_views" not in study_flags(preprocessed.views)
        assert not any("view_missing" in v.flags for v in preprocessed.views)

        # The results mosaic hangs all four (no "no image" tile), each in its own quadrant.
        sources = await asyncio.to_thread(load_sources, ctx.store, ctx.settings.bucket_dicom, inferred(study), True)
        assert set(sources.views) == set(SLOTS)
        mosaic = dcmread(io.BytesIO(_part10(build_sc(inferred(study), sources)))).pixel_array
        for grid_row, grid_col in SLOTS.values():
            top, left = HEADER_ROWS + grid_row * TILE_ROWS, grid_col * TILE_COLS
            tile = mosaic[top + 40 : top + TILE_ROWS - 40, left + 40 : left + TILE_COLS - 40]
            assert not np.all(tile == np.array(MISSING_RGB, dtype=np.uint8))
            assert tile.std() > 10


def _part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

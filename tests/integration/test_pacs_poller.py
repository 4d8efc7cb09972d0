"""Pulling studies from a real PACS (Orthanc): C-FIND for new MG studies, C-GET into our store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from shared.runtime import build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from services.ingest.__main__ import IngestComponent
from services.ingest.poller import PacsPoller
from tests.e2e.harness import storescu


async def test_poller_retrieves_a_new_study_once_from_orthanc(orthanc, settings: Settings, study_folder: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    # The modality sends to the hospital's PACS, not to us.
    output = await asyncio.to_thread(storescu, study_folder, orthanc.dicom_port, orthanc.ae_title, "MAMO_SALA1")
    assert output.count("Received Store Response (Success)") == 4

    polling = settings.model_copy(
        update={"pacs_host": "127.0.0.1", "pacs_port": orthanc.dicom_port, "pacs_ae_title": orthanc.ae_title, "pacs_hospital_id": "HGE-ENSENADA",
                "pacs_lookback_days": 365 * 10}
    )
    ctx = build_context(polling)
    IngestComponent(ctx)  # creates the tables
    await ctx.bus.start()
    try:
        poller = PacsPoller(IngestComponent(ctx).ingest)
        assert await asyncio.to_thread(poller.poll_once) == 4
        await ctx.bus.drain()
        assert await asyncio.to_thread(poller.poll_once) == 0  # already here: not retrieved again
        await ctx.bus.drain()
    finally:
        await ctx.bus.stop()
    sent = [json.loads(p) for _, p in ctx.bus.sent]
    stored = [e for e in sent if e["event_type"] == "instance.stored"]
    assert len(stored) == 4 and {e["hospital_id"] for e in stored} == {"HGE-ENSENADA"}
    assert [e["study_uid"] for e in sent if e["event_type"] == "study.completed"] == [four_view_study.study_uid]
    assert len(ctx.store.list_keys("dicom", f"HGE-ENSENADA/{four_view_study.study_uid}/")) == 4

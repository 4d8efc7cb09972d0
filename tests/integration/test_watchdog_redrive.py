"""A study whose next stage never saw its event is re-driven by the watchdog and reaches results.

The first process, where only the status API runs, records four ``instance.stored`` and
``study.completed``: no preprocess service was there to queue the event for. A new process on the
same SQLite file and object store starts every service; once the preprocess deadline has passed,
its watchdog queues the recorded ``study.completed`` again (through the outbox) and the study
reaches results, with the synthetic-model disclaimer.
"""

from __future__ import annotations

import asyncio
import hashlib

from sqlmodel import Session

from services.cli import ServiceName, registrar_of
from services.status_api.__main__ import register as register_status_api
from services.status_api.tables import StudyRow
from services.status_api.watchdog import WatchdogRow
from shared.events import InstanceStored, StudyCompleted, ViewRef, producer
from shared.runtime import build_context, run_until_stopped
from shared.settings import Settings
from shared.synth import SyntheticStudy

HOSPITAL = "HOSP-DEMO"


async def record_until_completed_then_die(settings: Settings, study: SyntheticStudy) -> None:
    """A process that stored the study and recorded its completion, but never preprocessed it."""
    ctx = build_context(settings)
    register_status_api(ctx)  # only the status API listens: the study's completion is recorded, nothing else runs
    await ctx.bus.start()
    envelope = dict(study_uid=study.study_uid, hospital_id=HOSPITAL, correlation_id="corr-crash",
                    accession_number=study.accession_number, producer=producer("ingest"))
    refs = []
    for view in study.views:
        data, ds = view.to_bytes(), view.dataset
        key = f"{HOSPITAL}/{study.study_uid}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        ctx.store.put_bytes(settings.bucket_dicom, key, data, "application/dicom")
        await ctx.bus.publish(InstanceStored(
            **envelope, sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID),
            sop_class_uid=str(ds.SOPClassUID), transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), modality="MG",
            laterality=view.laterality, view_position=view.view, object_key=key, size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(), patient_key="pk",
        ))
        refs.append(ViewRef(sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID),
                            object_key=key, laterality=view.laterality, view_position=view.view))
    await ctx.bus.publish(StudyCompleted(**envelope, reason="all_views", views=refs))
    await ctx.bus.drain()  # type: ignore[attr-defined]
    await ctx.bus.stop()
    ctx.engine.dispose()


def study_row(settings: Settings, study_uid: str) -> StudyRow | None:
    ctx_engine = build_context(settings).engine
    try:
        with Session(ctx_engine) as session:
            return session.get(StudyRow, (HOSPITAL, study_uid))
    finally:
        ctx_engine.dispose()


async def test_a_study_stuck_after_completion_is_re_driven_past_the_deadline_and_reaches_results(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    await record_until_completed_then_die(settings, four_view_study)
    before = study_row(settings, four_view_study.study_uid)
    assert before is not None and (before.state, before.instance_count) == ("completed", 4)

    ctx = build_context(settings.model_copy(update={"watchdog_preprocess_seconds": 3, "watchdog_interval_seconds": 0.5}))
    stop = asyncio.Event()
    system = asyncio.create_task(run_until_stopped(ctx, [registrar_of(name.value) for name in ServiceName], stop))
    try:
        row = None
        for _ in range(600):
            if system.done():
                system.result()  # the system stopped by itself: show why
            row = study_row(settings, four_view_study.study_uid)
            if row is not None and row.state in ("ready", "notified"):
                break
            await asyncio.sleep(0.2)
        assert row is not None and row.state in ("ready", "notified"), row
        assert row.status_light == "GREEN" and row.triage_light in ("RED", "YELLOW", "GREEN")
        assert row.disclaimer and "sintétic" in row.disclaimer
        assert row.derived_views and len(row.derived_views) == 4
        with Session(ctx.engine) as session:
            record = session.get(WatchdogRow, (HOSPITAL, four_view_study.study_uid, "preprocess"))
            assert record is not None and record.redrives == 1
    finally:
        stop.set()
        await system


async def test_a_red_result_that_never_reaches_its_people_is_reported_to_it_once_on_its_own_channel(
    settings: Settings, four_view_study: SyntheticStudy
) -> None:
    from datetime import timedelta

    from services.status_api.projector import project
    from services.status_api.tables import NotificationRow, StudyEventRow
    from services.status_api.watchdog import Watchdog
    from shared.db import init_db
    from shared.events import BreastResult, StudyInferred, utc_now
    from tests.conftest import free_port
    from tests.e2e.harness import body_text, smtp_sink

    with smtp_sink(free_port()) as sink:
        configured = settings.model_copy(update={
            "alert_deadline_seconds": 60, "watchdog_redrive_attempts": 1, "smtp_port": sink.port,
            "it_alert_channels": ["guardia-ti@hge.example.mx"],
        })
        ctx = build_context(configured)
        init_db(ctx.engine, [StudyRow, StudyEventRow, NotificationRow])
        red = StudyInferred(
            study_uid=four_view_study.study_uid, hospital_id=HOSPITAL, correlation_id="c", producer=producer("infer"),
            accession_number=four_view_study.accession_number,
            breasts=[BreastResult(laterality="L", malignancy_score=0.9, birads=5, density="B", views_used=["CC", "MLO"])],
            triage_light="RED", triage_reason="Sospechoso", model_name="m", model_version="1", model_trained=True,
            model_trained_on="fantomas sintéticos", disclaimer="Modelo de demostración con datos sintéticos.",
        )
        project(ctx.engine, red)  # nobody notifies it: the notify service is down
        watchdog = Watchdog(ctx)
        start = utc_now()
        first = await watchdog.sweep(start + timedelta(seconds=61))
        assert first.redriven == [(four_view_study.study_uid, "notify")] and first.it_alerted == [] and sink.messages == []
        second = await watchdog.sweep(start + timedelta(seconds=121))
        assert second.it_alerted == [(four_view_study.study_uid, "notify")]
        assert (await watchdog.sweep(start + timedelta(seconds=400))).it_alerted == []  # once
        [alert] = sink.to("guardia-ti@hge.example.mx")
        text = body_text(alert)
        assert four_view_study.accession_number in str(alert["Subject"]) or four_view_study.accession_number in text
        assert "ROJO" in text and "RED" in text and "sintétic" in text
        ctx.engine.dispose()

"""The watchdog: overdue once per study and stage past its deadline, re-drives within their limit.

Real SQLite and the real in-process bus; time is moved by sweeping at chosen moments.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import Session, select

from services.status_api.projector import project, timeline
from services.status_api.state import fold
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from services.status_api.watchdog import STAGES, Waiting, Watchdog, WatchdogRow, aware, decide, overdue_event_id
from shared.bus import MemoryBus
from shared.db import init_db
from shared.events import (
    BreastResult, Event, InstanceStored, NotificationSent, StudyCompleted, StudyFailed, StudyInferred, StudyOverdue, StudyPreprocessed, ViewRef,
    producer, utc_now,
)
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings

UID = "1.2.826.0.1.3680043.10.77"
ENVELOPE = dict(study_uid=UID, hospital_id="HGE", correlation_id="corr-w", accession_number="ACC-77")


def context(settings: Settings, **update: object) -> ServiceContext:
    ctx = build_context(settings.model_copy(update={"watchdog_redrive_attempts": 2, **update}))
    init_db(ctx.engine, [StudyRow, StudyEventRow, NotificationRow])
    return ctx


def stored() -> InstanceStored:
    return InstanceStored(
        **ENVELOPE, producer=producer("ingest"), sop_instance_uid=f"{UID}.1", series_instance_uid=f"{UID}.9",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG",
        object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


def completed() -> StudyCompleted:
    view = ViewRef(sop_instance_uid=f"{UID}.1", series_instance_uid=f"{UID}.9", object_key="k")
    return StudyCompleted(**ENVELOPE, producer=producer("ingest"), reason="all_views", views=[view])


def preprocessed() -> StudyPreprocessed:
    return StudyPreprocessed(**ENVELOPE, producer=producer("preprocess"), segmentation_backend="classic", views=[])


def published(ctx: ServiceContext, event_type: str) -> list[dict]:
    bus = ctx.bus
    assert isinstance(bus, MemoryBus)
    return [json.loads(raw) for topic, raw in bus.sent if topic == f"mdd.{event_type}"]


def record(ctx: ServiceContext, stage: str) -> WatchdogRow | None:
    with Session(ctx.engine) as session:
        return session.get(WatchdogRow, ("HGE", UID, stage))


async def test_overdue_only_after_the_stage_deadline_and_with_the_deadline(settings: Settings) -> None:
    ctx = context(settings, watchdog_preprocess_seconds=600)
    for event in (stored(), completed()):
        project(ctx.engine, event)
    start = utc_now()
    watchdog = Watchdog(ctx)  # a process that was already running

    early = await watchdog.sweep(start + timedelta(seconds=590))
    assert early.overdue == [] and early.redriven == [] and published(ctx, "study.overdue") == []

    late = await watchdog.sweep(start + timedelta(seconds=610))
    assert late.overdue == [(UID, "preprocess")]
    [overdue] = published(ctx, "study.overdue")
    assert (overdue["stage"], overdue["deadline_seconds"], overdue["accession_number"]) == ("preprocess", 600, "ACC-77")
    assert overdue["event_id"] == str(overdue_event_id("HGE", UID, "preprocess")) and overdue["producer"]["service"] == "status_api"


async def test_receiving_deadline_is_the_quiet_period_plus_the_margin_and_is_not_re_driven(settings: Settings) -> None:
    ctx = context(settings, study_quiet_seconds=30, watchdog_ingest_margin_seconds=120)
    project(ctx.engine, stored())
    start = utc_now()
    watchdog = Watchdog(ctx)
    assert (await watchdog.sweep(start + timedelta(seconds=140))).overdue == []
    report = await watchdog.sweep(start + timedelta(seconds=160))
    assert report.overdue == [(UID, "ingest")] and report.redriven == []
    assert published(ctx, "study.overdue")[0]["deadline_seconds"] == 150
    assert published(ctx, "instance.stored") == []


async def test_overdue_is_published_once_across_sweeps_restarts_and_instances(settings: Settings) -> None:
    ctx = context(settings, watchdog_infer_seconds=60)
    for event in (stored(), completed(), preprocessed()):
        project(ctx.engine, event)
    start = utc_now()
    first = Watchdog(ctx)
    assert (await first.sweep(start + timedelta(seconds=61))).overdue == [(UID, "infer")]
    assert (await first.sweep(start + timedelta(seconds=200))).overdue == []
    other = Watchdog(context(settings, watchdog_infer_seconds=60))  # same database
    assert (await other.sweep(start + timedelta(seconds=300))).overdue == []
    assert len(published(ctx, "study.overdue")) == 1
    row = record(ctx, "infer")
    assert row is not None and row.overdue_published_at is not None

    # The projection shows it: overdue, RED, until the stage answers.
    [overdue] = published(ctx, "study.overdue")
    project(ctx.engine, StudyOverdue.model_validate(overdue))
    with Session(ctx.engine) as session:
        study = session.get(StudyRow, ("HGE", UID))
        assert study is not None and (study.state, study.status_light) == ("overdue", "RED")


async def test_a_stuck_study_is_re_driven_with_its_recorded_event_at_most_n_times(settings: Settings) -> None:
    ctx = context(settings, watchdog_preprocess_seconds=100, watchdog_redrive_attempts=2)
    original = completed()
    for event in (stored(), original):
        project(ctx.engine, event)
    start = utc_now()
    watchdog = Watchdog(ctx)
    redriven = []
    for seconds in (50, 101, 150, 202, 303, 404, 505):
        redriven.append(bool((await watchdog.sweep(start + timedelta(seconds=seconds))).redriven))
    # One deadline after the event, one deadline after that try, then never again.
    assert redriven == [False, True, False, True, False, False, False]
    again = published(ctx, "study.completed")
    assert len(again) == 2
    assert all(StudyCompleted.model_validate(e) == original for e in again)  # the very event: same id, same views
    row = record(ctx, "preprocess")
    assert row is not None and row.redrives == 2


async def test_nothing_for_failed_studies_or_studies_with_results(settings: Settings) -> None:
    ctx = context(settings, watchdog_preprocess_seconds=10)
    for event in (stored(), completed(), StudyFailed(**ENVELOPE, producer=producer("preprocess"), stage="preprocess", reason="x")):
        project(ctx.engine, event)
    other = {**ENVELOPE, "study_uid": UID + ".2"}
    result = StudyInferred(
        **other, producer=producer("infer"),
        breasts=[BreastResult(laterality="L", malignancy_score=0.1, birads=1, density="A", views_used=["CC"])],
        triage_light="GREEN", triage_reason="r", model_name="m", model_version="1", model_trained=True,
        model_trained_on="synthetic", disclaimer="d",
    )
    project(ctx.engine, result)
    report = await Watchdog(ctx).sweep(utc_now() + timedelta(days=1))
    assert report.overdue == [] and report.redriven == []


def red_result(light: str = "RED") -> StudyInferred:
    return StudyInferred(
        **ENVELOPE, producer=producer("infer"),
        breasts=[BreastResult(laterality="L", malignancy_score=0.9, birads=5, density="B", views_used=["CC", "MLO"])],
        triage_light=light, triage_reason="r", model_name="m", model_version="1", model_trained=True,
        model_trained_on="synthetic", disclaimer="d",
    )


async def test_a_red_result_not_notified_in_time_is_overdue_and_re_driven_and_a_green_one_is_not(settings: Settings) -> None:
    ctx = context(settings, alert_deadline_seconds=120, watchdog_redrive_attempts=1)
    red = red_result()
    for event in (stored(), completed(), preprocessed(), red):
        project(ctx.engine, event)
    green_uid = UID + ".4"
    project(ctx.engine, red_result("GREEN").model_copy(update={"study_uid": green_uid}))
    start = utc_now()
    watchdog = Watchdog(ctx)
    assert (await watchdog.sweep(start + timedelta(seconds=100))).overdue == []
    report = await watchdog.sweep(start + timedelta(seconds=130))
    assert report.overdue == [(UID, "notify")] and report.redriven == [(UID, "notify")]
    [again] = published(ctx, "study.inferred")
    assert StudyInferred.model_validate(again) == red  # the very event, queued again
    [overdue] = published(ctx, "study.overdue")
    assert (overdue["stage"], overdue["deadline_seconds"]) == ("notify", 120)
    # Once notified, the study is left alone.
    project(ctx.engine, NotificationSent(**ENVELOPE, producer=producer("notify"), rule="triage_red", channel="email",
                                         recipient="radio", status="sent"))
    assert (await watchdog.sweep(start + timedelta(seconds=1000))).it_alerted == []


def test_the_notify_stage_tells_it_once_at_twice_its_deadline() -> None:
    settings = Settings(alert_deadline_seconds=100, watchdog_redrive_attempts=1)
    now = utc_now()
    notify = next(stage for stage in STAGES if stage.name == "notify")
    waiting = Waiting(UID, "HGE", "c", "", notify, now - timedelta(seconds=150), {})
    assert decide(waiting, WatchdogRow(hospital_id="HGE", study_uid=UID, stage="notify"), settings, now).alert_it is False
    late = Waiting(UID, "HGE", "c", "", notify, now - timedelta(seconds=201), {})
    assert decide(late, WatchdogRow(hospital_id="HGE", study_uid=UID, stage="notify"), settings, now).alert_it is True
    told = WatchdogRow(hospital_id="HGE", study_uid=UID, stage="notify", it_alerted_at=now)
    assert decide(late, told, settings, now).alert_it is False
    preprocess = next(stage for stage in STAGES if stage.name == "preprocess")
    stuck = Waiting(UID, "HGE", "c", "", preprocess, now - timedelta(days=1), {})
    assert decide(stuck, WatchdogRow(hospital_id="HGE", study_uid=UID, stage="preprocess"), settings, now).alert_it is False


def events_of(ctx: ServiceContext) -> list[Event]:
    with Session(ctx.engine) as session:
        return timeline(session, "HGE", UID)


def test_fold_of_the_timeline_matches_the_row(settings: Settings) -> None:
    ctx = context(settings)
    for event in (stored(), completed(), preprocessed()):
        project(ctx.engine, event)
    view = fold(events_of(ctx))
    with Session(ctx.engine) as session:
        row = session.get(StudyRow, ("HGE", UID))
        assert row is not None and (row.state, row.progress) == (view.state, view.progress) == ("preprocessed", "preprocessed")


def age_events(ctx: ServiceContext, study_uid: str, seconds: float) -> None:
    """Make a study's recorded events look ``seconds`` older than they are."""
    with Session(ctx.engine) as session:
        for row in session.exec(select(StudyEventRow).where(StudyEventRow.study_uid == study_uid)):
            row.received_at = aware(row.received_at) - timedelta(seconds=seconds)
            session.add(row)
        session.commit()


async def test_the_wait_counts_from_the_latest_input_event_of_the_stage_each_study_is_in(settings: Settings) -> None:
    ctx = context(settings, study_quiet_seconds=30, watchdog_ingest_margin_seconds=120, watchdog_preprocess_seconds=150)
    project(ctx.engine, stored())
    age_events(ctx, UID, 100)
    second = stored().model_copy(update={"sop_instance_uid": f"{UID}.2"})
    project(ctx.engine, second)  # a later instance of the same study restarts its wait

    other = {**ENVELOPE, "study_uid": UID + ".3", "accession_number": "ACC-78"}
    project(ctx.engine, stored().model_copy(update=other))
    age_events(ctx, other["study_uid"], 1000)  # its instances are old, but it completed just now
    project(ctx.engine, completed().model_copy(update=other))

    start = utc_now()
    watchdog = Watchdog(ctx)
    assert (await watchdog.sweep(start + timedelta(seconds=140))).overdue == []
    report = await watchdog.sweep(start + timedelta(seconds=160))
    assert sorted(report.overdue) == [(UID, "ingest"), (other["study_uid"], "preprocess")]

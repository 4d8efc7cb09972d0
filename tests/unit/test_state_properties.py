"""Properties of the study state: any order of arrival, with any redeliveries, gives the same study.

A realistic timeline of one study is generated (four instances, completion, preprocessing,
inference with a light, a notification, a report; sometimes a failure or a delay, with the notice
about it, after which the study either recovers or stops). Whatever order and duplications the
broker delivers it in, the pure state machine and the projector on a real SQLite database reach the
state that the timeline calls for, and the progress never moves backwards on the way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session

from services.status_api.projector import project, project_batch
from services.status_api.state import PROGRESS, StudyView, apply_event
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from shared.db import init_db, make_engine
from shared.events import (
    BreastResult,
    DerivedView,
    Event,
    InstanceStored,
    NotificationSent,
    StudyCompleted,
    StudyFailed,
    StudyInferred,
    StudyOverdue,
    StudyPreprocessed,
    StudyReported,
    ViewRef,
    producer,
)

STUDY = "1.2.826.0.1.3680043.10.1"
ENVELOPE = dict(study_uid=STUDY, hospital_id="HGE", correlation_id="corr", accession_number="A1")
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
#: Stage of a problem -> the stage output that would resolve it (the step the problem stops).
PROBLEM_STAGES = {"ingest": "completed", "preprocess": "preprocessed", "infer": "inferred"}
STEPS = ("completed", "preprocessed", "inferred", "notified", "reported")


def at(step: float) -> dict[str, object]:
    return {**ENVELOPE, "occurred_at": T0 + timedelta(seconds=step)}


def stored(i: int) -> InstanceStored:
    side, view = VIEWS[i]
    return InstanceStored(
        **at(i), producer=producer("ingest"), sop_instance_uid=f"{STUDY}.{i}", series_instance_uid=f"{STUDY}.9",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG",
        laterality=side, view_position=view, object_key=f"HGE/{STUDY}/{i}.dcm", size_bytes=10, sha256="0" * 64,
        patient_key="p",
    )


def step_event(step: str, when: float, light: str, notification: str) -> Event:
    if step == "completed":
        views = [ViewRef(sop_instance_uid=f"{STUDY}.{i}", series_instance_uid=f"{STUDY}.9", object_key=f"k{i}") for i in range(4)]
        return StudyCompleted(**at(when), producer=producer("ingest"), reason="all_views", views=views)
    if step == "preprocessed":
        derived = [
            DerivedView(sop_instance_uid=f"{STUDY}.{i}", laterality=s, view_position=v, mask_key="m", crop_key="c",
                        magma_key="g", input_key="n", breast_area_fraction=0.4)
            for i, (s, v) in enumerate(VIEWS)
        ]
        return StudyPreprocessed(**at(when), producer=producer("preprocess"), segmentation_backend="classic", views=derived)
    if step == "inferred":
        return inferred(when, light)
    if step == "notified":
        return NotificationSent(**at(when), producer=producer("notify"), rule="result_ready", channel="email",
                                recipient="radiologia", status=notification)  # type: ignore[arg-type]
    return StudyReported(**at(when), producer=producer("status_api"), birads=2, reporter="dra")


def inferred(when: float, light: str) -> StudyInferred:
    return StudyInferred(
        **at(when), producer=producer("infer"),
        breasts=[BreastResult(laterality="L", malignancy_score=0.7, birads=4, density="B", views_used=["CC", "MLO"])],
        triage_light=light, triage_reason=f"razón {light}", model_name="twoview", model_version="1", model_trained=True,  # type: ignore[arg-type]
        model_trained_on="synthetic phantoms", disclaimer="Modelo de demostración / demonstration model",
    )


@dataclass(frozen=True)
class Timeline:
    """One study's events in the order they happened, and what a person expects to see at the end."""

    events: list[Event]
    state: str
    progress: str
    triage_light: str | None
    failure_reason: str | None


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    light = draw(st.sampled_from(["RED", "YELLOW", "GREEN"]))
    notification = draw(st.sampled_from(["sent", "failed"]))
    reported = draw(st.booleans())
    problem = draw(st.none() | st.tuples(st.sampled_from(["failed", "overdue"]), st.sampled_from(sorted(PROBLEM_STAGES))))
    recovers = draw(st.booleans())
    rerun_light = draw(st.none() | st.sampled_from(["RED", "YELLOW", "GREEN"]))

    events: list[Event] = [stored(i) for i in range(4)]
    when = 10.0
    state = progress = "receiving"
    triage: str | None = None
    failure_reason = None
    for step in STEPS:
        if step == "reported" and not reported:
            break
        if problem and PROBLEM_STAGES[problem[1]] == step:
            kind, stage = problem
            if kind == "failed":
                events.append(StudyFailed(**at(when), producer=producer(stage), stage=stage, reason="falla / boom"))
            else:
                events.append(StudyOverdue(**at(when), producer=producer("status_api"), stage=stage, deadline_seconds=60))
            # The people who fix problems are told: a notice that is not the result notification.
            events.append(NotificationSent(**at(when + 1), producer=producer("notify"), rule=f"study_{kind}",
                                           channel="email", recipient="ti", status="sent"))
            when += 2
            if not recovers:
                state, failure_reason = kind, (f"{stage}: falla / boom" if kind == "failed" else None)
                break
        events.append(step_event(step, when, light, notification))
        when += 10
        if step == "inferred":
            triage = light
            if rerun_light:  # a re-driven study is inferred a second time; the later inference counts
                events.append(inferred(when, rerun_light))
                triage = rerun_light
                when += 10
        if step == "notified" and notification == "failed":
            progress = "ready"
            continue
        progress = {"inferred": "ready"}.get(step, step)
        state = progress
    return Timeline(events, state, progress, triage, failure_reason)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Timeline, list[Event]]:
    """A timeline and the events as a broker may deliver them: shuffled, some more than once."""
    timeline = draw(timelines())
    order = draw(st.permutations(timeline.events))
    again = draw(st.lists(st.sampled_from(timeline.events), max_size=6))
    delivered = list(order)
    for event in again:
        delivered.insert(draw(st.integers(0, len(delivered))), event)
    return timeline, delivered


def rank(progress: str) -> int:
    return PROGRESS.index(progress)


@given(deliveries())
@settings(max_examples=400, deadline=None)
def test_pure_state_machine_reaches_the_timelines_state_in_any_order(case: tuple[Timeline, list[Event]]) -> None:
    timeline, delivered = case
    canonical = StudyView()
    for event in timeline.events:
        canonical = apply_event(canonical, event)
    view = StudyView()
    for event in delivered:
        after = apply_event(view, event)
        assert rank(after.progress) >= rank(view.progress), f"{event.event_type} moved {view.progress} -> {after.progress}"
        view = after
    shown = (view.state, view.progress, view.status_light, view.triage_light, view.failed, view.failure_reason, view.overdue)
    assert shown == (
        canonical.state, canonical.progress, canonical.status_light, canonical.triage_light, canonical.failed,
        canonical.failure_reason, canonical.overdue,
    )
    assert (view.state, view.progress, view.triage_light, view.failure_reason) == (
        timeline.state, timeline.progress, timeline.triage_light, timeline.failure_reason,
    )
    expected_light = "GREEN" if timeline.state in ("ready", "notified", "reported") else "RED" if timeline.state in (
        "receiving", "failed", "overdue") else "YELLOW"
    assert view.status_light == expected_light


def projected(db: Path, events: list[Event]) -> tuple[dict[str, object], list[str]]:
    """Project the events one by one on a fresh SQLite file: the final row and the progress after each."""
    engine = make_engine(f"sqlite:///{db.as_posix()}")
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    seen: list[str] = []
    applied: set[str] = set()
    try:
        for event in events:
            first_time = str(event.event_id) not in applied
            assert project(engine, event) is first_time  # a redelivery is recognised and changes nothing
            applied.add(str(event.event_id))
            with Session(engine) as session:
                row = session.get(StudyRow, ("HGE", STUDY))
                assert row is not None
                seen.append(row.progress)
        with Session(engine) as session:
            row = session.get(StudyRow, ("HGE", STUDY))
            assert row is not None
            final = row.model_dump(exclude={"created_at", "updated_at"})
    finally:
        engine.dispose()
    return final, seen


@given(deliveries())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_projector_on_sqlite_reaches_the_same_row_in_any_order(case: tuple[Timeline, list[Event]]) -> None:
    timeline, delivered = case
    with tempfile.TemporaryDirectory() as folder:
        canonical, _ = projected(Path(folder) / "canonical.db", timeline.events)
        final, progress = projected(Path(folder) / "shuffled.db", delivered)
    assert all(rank(a) <= rank(b) for a, b in zip(progress, progress[1:])), progress
    assert final == canonical
    assert (final["state"], final["progress"], final["triage_light"], final["failure_reason"]) == (
        timeline.state, timeline.progress, timeline.triage_light, timeline.failure_reason,
    )
    assert final["instance_count"] == 4
    if timeline.triage_light is not None:
        assert final["triage_reason"] == f"razón {timeline.triage_light}"
        assert final["model_trained_on"] == "synthetic phantoms" and final["disclaimer"]


def projected_in_batches(db: Path, batches: list[list[Event]]) -> dict[str, object]:
    """Project the events batch by batch (one transaction each) on a fresh SQLite file: the final row."""
    engine = make_engine(f"sqlite:///{db.as_posix()}")
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    try:
        for batch in batches:
            project_batch(engine, batch)
        with Session(engine) as session:
            row = session.get(StudyRow, ("HGE", STUDY))
            assert row is not None
            return row.model_dump(exclude={"created_at", "updated_at"})
    finally:
        engine.dispose()


@given(deliveries(), st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_projector_reaches_the_same_row_however_the_events_are_batched(case: tuple[Timeline, list[Event]], data: st.DataObject) -> None:
    timeline, delivered = case
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(delivered) - 1)), max_size=5)))
    batches = [delivered[start:end] for start, end in zip([0, *cuts], [*cuts, len(delivered)]) if delivered[start:end]]
    with tempfile.TemporaryDirectory() as folder:
        canonical, _ = projected(Path(folder) / "canonical.db", timeline.events)
        final = projected_in_batches(Path(folder) / "batched.db", batches)
    assert final == canonical

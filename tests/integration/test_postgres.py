"""The services' tables on a real PostgreSQL: projection, notification log and ingest assembly."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from shared.db import init_db, make_engine
from shared.events import InstanceStored, StudyCompleted, producer, utc_now
from services.ingest.tables import AssemblingStudy, StoredInstance
from services.notify.tables import NotificationRecord
from services.status_api.projector import project
from services.status_api.tables import StudyEventRow, StudyRow

ENVELOPE = dict(study_uid="1.2.840.77", hospital_id="HGE", correlation_id="c", producer=producer("ingest"))


def test_status_projection_is_idempotent_on_postgres(postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(postgres_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRecord, StoredInstance, AssemblingStudy])
    stored = InstanceStored(
        **ENVELOPE, sop_instance_uid="1.1", series_instance_uid="1.2", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )
    completed = StudyCompleted(**ENVELOPE, reason="all_views", views=[])
    assert project(engine, completed) and project(engine, stored)
    assert not project(engine, stored)
    with Session(engine) as session:
        row = session.get(StudyRow, ("HGE", "1.2.840.77"))
        assert row is not None and (row.state, row.status_light, row.instance_count) == ("completed", "YELLOW", 1)
        events = session.exec(select(StudyEventRow).where(StudyEventRow.study_uid == "1.2.840.77")).all()
        assert sorted(e.event_type for e in events) == ["instance.stored", "study.completed"]


def test_ingest_assembly_times_round_trip_on_postgres(postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(postgres_url)
    init_db(engine, [StoredInstance, AssemblingStudy])
    earlier = utc_now() - timedelta(minutes=5)
    with Session(engine) as session:
        session.add(AssemblingStudy(study_uid="9.8", hospital_id="H", correlation_id="c", first_instance_at=earlier, last_instance_at=earlier))
        session.commit()
    from services.ingest.assembly import quiet_since

    with Session(engine) as session:
        study = session.get(AssemblingStudy, ("H", "9.8"))
        assert study is not None and quiet_since(study.last_instance_at, utc_now(), 60)
        assert not quiet_since(study.last_instance_at, utc_now(), 600)

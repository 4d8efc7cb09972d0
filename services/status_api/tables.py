"""The status API's tables: one row per study (its projection) and its event timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Computed, Index, Integer
from sqlmodel import Field, SQLModel


#: Suspicious first: RED, YELLOW, GREEN, then studies not yet triaged. Computed by the database.
TRIAGE_RANK_SQL = "CASE triage_light WHEN 'RED' THEN 0 WHEN 'YELLOW' THEN 1 WHEN 'GREEN' THEN 2 ELSE 3 END"


#: A study's name: (hospital, Study Instance UID).
StudyKey = tuple[str, str]


class StudyRow(SQLModel, table=True):
    """The current projection of a study from its events."""

    __tablename__ = "status_study"

    hospital_id: str = Field(primary_key=True)
    study_uid: str = Field(primary_key=True)
    accession_number: str = ""
    correlation_id: str = ""
    progress: str = "receiving"
    state: str = Field("receiving", index=True)
    status_light: str = "RED"
    triage_light: str | None = None
    # A generated column, so that the "suspicious first" order can use an index (stored: PostgreSQL 18
    # cannot index virtual ones; migration 0003 adds it as virtual on SQLite, where ALTER TABLE must).
    triage_rank: int | None = Field(default=None, sa_column=Column(Integer, Computed(TRIAGE_RANK_SQL, persisted=True)))
    triage_reason: str | None = None
    failed: bool = False
    failure_reason: str | None = None
    overdue: bool = False
    instance_count: int = 0
    breasts: list[dict] | None = Field(default=None, sa_column=Column(JSON))
    derived_views: list[dict] | None = Field(default=None, sa_column=Column(JSON))
    quality_flags: list[str] | None = Field(default=None, sa_column=Column(JSON))
    model_name: str | None = None
    model_version: str | None = None
    model_trained: bool | None = None
    model_trained_on: str | None = None
    disclaimer: str | None = None
    created_at: datetime
    updated_at: datetime = Field(index=True)


_study = StudyRow.__table__  # type: ignore[attr-defined]
# The list's "suspicious first" order, within a hospital and over all of them (newest first within a light).
Index("ix_status_study_hospital_triage", _study.c.hospital_id, _study.c.triage_rank, _study.c.updated_at.desc(), _study.c.study_uid)
Index("ix_status_study_triage", _study.c.triage_rank, _study.c.updated_at.desc(), _study.c.study_uid)


class StudyEventRow(SQLModel, table=True):
    """One event of a study's timeline; ``event_id`` makes redeliveries harmless."""

    __tablename__ = "status_event"

    event_id: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    hospital_id: str = Field("", index=True)
    event_type: str
    producer: str
    occurred_at: datetime
    received_at: datetime
    payload: dict = Field(sa_column=Column(JSON))


class NotificationRow(SQLModel, table=True):
    """One notification as notify reported it (``notification.sent``): the notification log."""

    __tablename__ = "status_notification"

    event_id: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    hospital_id: str = Field(index=True)
    accession_number: str = ""
    rule: str
    channel: str
    recipient: str
    status: str = Field(index=True)
    detail: str = ""
    producer: str = ""
    occurred_at: datetime = Field(index=True)
    received_at: datetime

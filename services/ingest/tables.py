"""Ingest's own tables: what was stored, and how far each study's assembly has come."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from shared.reliability.claims import ClaimColumns


class StoredInstance(SQLModel, table=True):
    """One instance that is durable in the store and whose event the broker accepted."""

    __tablename__ = "ingest_instance"

    # Scoped by hospital: a UID another hospital reuses is another instance, never this one.
    hospital_id: str = Field(primary_key=True)
    sop_instance_uid: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    series_instance_uid: str
    object_key: str
    sha256: str
    size_bytes: int
    laterality: str | None = None
    view_position: str | None = None
    stored_at: datetime


class AssemblingStudy(SQLModel, table=True):
    """A study being received; ``completed_at`` is set once ``study.completed`` was published."""

    __tablename__ = "ingest_study"

    hospital_id: str = Field(primary_key=True)
    study_uid: str = Field(primary_key=True)
    correlation_id: str
    accession_number: str = ""
    patient_key: str = ""
    first_instance_at: datetime
    last_instance_at: datetime = Field(index=True)
    completed_at: datetime | None = Field(default=None, index=True)
    completion_reason: str | None = None
    views_seen: list[str] = Field(default_factory=list, sa_column=Column(JSON), description="e.g. ['L-CC', 'R-MLO']")


class PendingCommitmentReport(ClaimColumns, table=True):
    """A storage commitment decision and its N-EVENT-REPORT: a claim of :mod:`shared.reliability.claims`
    (``sending`` by the association's thread → ``sent``, or ``pending`` until the resend task delivers it).

    Written once the decision is made, before the first try, so that a report survives a crash (its
    claim's lease runs out and the resend task takes it over) or a modality that is away.
    """

    __tablename__ = "ingest_commitment_report"

    transaction_uid: str = Field(primary_key=True)
    calling_ae: str
    event_type: int
    event_information: str = Field(sa_column=Column(Text, nullable=False))  # DICOM JSON of the Event Information
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

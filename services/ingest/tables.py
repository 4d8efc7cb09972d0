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
    claim's lease runs out and the resend task takes it over) or a modality that is away. Keyed by
    :func:`commitment_report_id`: a Transaction UID that another hospital's or another modality's
    request reuses is another transaction, and never replaces this one's report.
    """

    __tablename__ = "ingest_commitment_report"

    report_id: str = Field(primary_key=True)
    hospital_id: str = ""  # the requester's hospital (empty for reports kept from before revision 0008)
    transaction_uid: str
    calling_ae: str
    event_type: int
    event_information: str = Field(sa_column=Column(Text, nullable=False))  # DICOM JSON of the Event Information
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


def commitment_report_id(hospital_id: str, calling_ae: str, transaction_uid: str) -> str:
    """The key of one requester's commitment transaction: ``hospital/calling AE/Transaction UID``.

    Neither a hospital id nor a (validated) UID holds a slash, so the first and the last slash split
    the key back into its three parts whatever the AE title holds.
    """
    return f"{hospital_id}/{calling_ae}/{transaction_uid}"

"""Tables of the provider deliveries: what was sent to whom, and how de-identified studies map back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel

from shared.events import utc_now
from shared.reliability.claims import ClaimColumns


class ProviderDelivery(ClaimColumns, table=True):
    """One offer of one study to one provider on one channel: a claim of :mod:`shared.reliability.claims`
    (``pending`` → ``sending`` → ``sent`` | ``failed``)."""

    __tablename__ = "notify_provider_delivery"

    delivery_key: str = Field(primary_key=True, description="hospital_id:study_uid:provider_id:channel")
    delivery_id: str = Field(index=True, description="Sent to the provider; same on every channel and retry")
    provider_id: str = Field(index=True)
    study_uid: str = Field(index=True)
    channel: str
    payload: str = Field("", sa_column=Column(Text, nullable=False, server_default=""), description="The study.completed offered")
    updated_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class DeidStudyMap(SQLModel, table=True):
    """A de-identified study as one provider knows it, and the original it stands for."""

    __tablename__ = "notify_provider_deid_map"

    provider_id: str = Field(primary_key=True)
    deid_study_uid: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    accession_number: str = ""
    deid_accession_number: str = ""
    hospital_id: str = ""
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]

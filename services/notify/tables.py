"""Notify's own tables: each delivery claimed once, and the GREEN studies the daily digest lists."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class NotificationRecord(SQLModel, table=True):
    """One (study, rule, channel, recipient) — or one digest — claimed before it is sent.

    ``status``: sending → sent | failed; a ``sending`` left behind by a stopped service becomes
    ``uncertain`` (it may or may not have gone out, so it is reported, never resent blindly).
    """

    __tablename__ = "notify_delivery"

    notification_key: str = Field(primary_key=True)
    event_id: str = Field(description="Id of the notification.sent event published for it (same on every re-publish)")
    kind: str = Field("study", description="study or digest; digests publish no notification.sent")
    study_uid: str = Field(index=True)
    hospital_id: str = ""
    correlation_id: str = ""
    accession_number: str = ""
    rule: str
    channel: str
    recipient: str
    status: str = Field(index=True)
    attempts: int = 0
    detail: str = ""
    owner: str = Field("", description="Process that claimed it")
    dead_lettered: bool = False
    source_topic: str = ""
    payload: str = Field("", description="The event (or digest) that called for it, for the dead-letter topic")
    created_at: datetime
    updated_at: datetime = Field(index=True)


class GreenStudy(SQLModel, table=True):
    """A study the model lit GREEN, recorded from ``study.inferred`` for the daily digest."""

    __tablename__ = "notify_green_study"

    study_uid: str = Field(primary_key=True)
    hospital_id: str = Field(index=True)
    accession_number: str = ""
    inferred_at: datetime = Field(index=True)
    model_trained: bool = True
    disclaimer: str = ""

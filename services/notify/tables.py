"""Notify's own tables: each delivery claimed once, and the GREEN studies the daily digest lists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from shared.reliability.claims import ClaimColumns


class NotificationRecord(ClaimColumns, table=True):
    """One (study, rule, channel, recipient) — or one digest, or one alert to IT — recorded before it is sent.

    A claim of :mod:`shared.reliability.claims`: ``pending`` → ``sending`` → ``sent`` | ``failed`` |
    ``uncertain``. A ``sending`` whose owner died is taken over after its lease: sent again under the
    same ``message_id`` where the channel recognises a resend (e-mail, webhooks), otherwise settled
    ``uncertain`` and IT is told once.
    """

    __tablename__ = "notify_delivery"

    notification_key: str = Field(primary_key=True)
    event_id: str = Field(description="Id of the notification.sent event published for it (same on every re-publish)")
    kind: str = Field("study", description="study, digest or it-alert; only study deliveries publish notification.sent")
    study_uid: str = Field(index=True)
    hospital_id: str = ""
    correlation_id: str = ""
    accession_number: str = ""
    rule: str
    channel: str
    recipient: str = Field(description="Recipient and target as shown in logs and events")
    recipient_id: str = Field("", description="The recipient's id in the rules")
    target: str = Field("", description="The channel's printable target (its URL, with secrets, is looked up when sending)")
    subject: str = Field("", sa_column=Column(Text, nullable=False, server_default=""))
    body: str = Field("", sa_column=Column(Text, nullable=False, server_default=""))
    message_id: str = Field("", description="Message-ID / Idempotency-Key: the same on every send")
    status: str = Field(index=True)  # the IT-alert sweep looks for uncertain and failed ones
    dead_lettered: bool = False
    source_topic: str = ""
    payload: str = Field("", description="The event (or digest) that called for it, for the dead-letter topic")
    created_at: datetime
    updated_at: datetime = Field(index=True)


class GreenStudy(SQLModel, table=True):
    """A study the model lit GREEN, recorded from ``study.inferred`` for the daily digest."""

    __tablename__ = "notify_green_study"

    hospital_id: str = Field(primary_key=True)
    study_uid: str = Field(primary_key=True)
    accession_number: str = ""
    inferred_at: datetime = Field(index=True)
    model_trained: bool = True
    disclaimer: str = ""

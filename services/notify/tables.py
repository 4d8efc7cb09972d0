"""Notify's own table: one row per (study, rule, channel, recipient), so each is sent once."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class NotificationRecord(SQLModel, table=True):
    """A notification that was attempted; ``status`` is sending, sent or failed."""

    __tablename__ = "notify_log"

    notification_key: str = Field(primary_key=True)
    study_uid: str = Field(index=True)
    rule: str
    channel: str
    recipient: str
    status: str
    attempts: int = 0
    detail: str = ""
    updated_at: datetime

"""The tables of the reliability mechanisms (created by Alembic revision 0004)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, Text
from sqlmodel import Field, SQLModel

from shared.events import utc_now

_UTC = DateTime(timezone=True)


class OutboxRow(SQLModel, table=True):
    """An event committed with the state change it announces, until the relay has published it."""

    __tablename__ = "reliability_outbox"

    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER PRIMARY KEY.
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    )
    event_id: str = Field(unique=True, description="The event's id: writing the same event twice keeps one row")
    study_uid: str = Field(index=True)
    event_type: str
    topic: str = Field("", description="An explicit topic (a provider's); empty = the event type's topic")
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=_UTC, index=True)  # type: ignore[call-overload]
    relay_after: datetime = Field(
        default_factory=utc_now, sa_type=_UTC, index=True,  # type: ignore[call-overload]
        description="When the relay may publish it: after the writer's own flush had its chance (now for operators)",
    )
    published_at: datetime | None = Field(default=None, sa_type=_UTC, index=True)  # type: ignore[call-overload]
    generation: int = Field(0, description="Times it was queued again (a re-drive); a late mark of an earlier publication misses it")


class ConsumedRow(SQLModel, table=True):
    """What one consumer group did with one event: attempts (kept across crashes) and, once done, its outputs."""

    __tablename__ = "reliability_consumed"

    consumer: str = Field(primary_key=True, description="Consumer group")
    event_id: str = Field(primary_key=True)
    study_uid: str = Field("", index=True)
    hospital_id: str = Field("", index=True)
    status: str = Field("running", description="running, failed (will retry), done or dead (dead-lettered)")
    attempts: int = Field(0, description="Attempts begun; a transient failure gives its attempt back")
    failures: int = Field(0, description="Attempts that ended in a deterministic failure")
    last_error: str = ""
    outputs: list[dict] | None = Field(default=None, sa_column=Column(JSON), description="Events produced, as published")
    updated_at: datetime = Field(default_factory=utc_now, sa_type=_UTC, index=True)  # type: ignore[call-overload]


class LeaseRow(SQLModel, table=True):
    """A leadership lease: the replica named ``owner`` runs the periodic task ``name`` until ``expires_at``."""

    __tablename__ = "reliability_lease"

    name: str = Field(primary_key=True)
    owner: str
    expires_at: datetime = Field(sa_type=_UTC)  # type: ignore[call-overload]


class DeadLetterRow(SQLModel, table=True):
    """A dead-lettered message, kept for the operators (``mdd dlq``) next to the ``mdd.dlq`` topic."""

    __tablename__ = "reliability_dead_letter"

    dead_letter_id: str = Field(primary_key=True)
    consumer: str = Field(index=True, description="Consumer group (stage) that gave up")
    source_topic: str
    event_id: str | None = Field(default=None, index=True)
    study_uid: str | None = Field(default=None, index=True)
    hospital_id: str | None = Field(default=None, index=True)
    error: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = 0
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=_UTC, index=True)  # type: ignore[call-overload]
    status: str = Field("open", index=True, description="open, replayed or discarded")
    resolved_at: datetime | None = Field(default=None, sa_type=_UTC)  # type: ignore[call-overload]
    resolved_by: str = ""
    resolution: str = ""


RELIABILITY_TABLES: list[type[SQLModel]] = [OutboxRow, ConsumedRow, LeaseRow, DeadLetterRow]

"""Claim-before-send records: each (study, provider, channel) is delivered once.

A claim is taken atomically: a new row, or a row whose earlier try failed (a re-driven event) or
whose sender vanished mid-send (a 'sending' row older than the lease). A sent offer is never sent
again; a re-sent offer carries the same delivery id, so the provider can drop a duplicate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.events import utc_now
from services.notify.providers.tables import ProviderDelivery

CLAIM_LEASE = timedelta(minutes=15)
_DELIVERY_NAMESPACE = uuid.UUID("5f0c3c1e-8d0a-4b8e-9a55-6d1b0c2f7e41")


def delivery_id(study_uid: str, provider_id: str, provider_seed: str) -> uuid.UUID:
    """The stable id of the offer of ``study_uid`` to a provider (same on every try and channel).

    The provider's secret seed goes into it, so that nobody can test a guessed study UID against it.
    """
    return uuid.uuid5(_DELIVERY_NAMESPACE, f"{study_uid}:{provider_id}:{provider_seed}")


def delivery_key(study_uid: str, provider_id: str, channel: str) -> str:
    """Primary key of a delivery record."""
    return f"{study_uid}:{provider_id}:{channel}"


def needs_sending(engine: Engine, key: str) -> bool:
    """False when the delivery was sent, or is being sent right now by someone else."""
    with Session(engine) as session:
        record = session.get(ProviderDelivery, key)
    if record is None or record.status == "failed":
        return True
    return record.status == "sending" and _as_utc(record.updated_at) < utc_now() - CLAIM_LEASE


def claim(engine: Engine, study_uid: str, provider_id: str, channel: str, offer_id: uuid.UUID) -> bool:
    """Take the delivery for this sender; False when it is sent or taken by another."""
    key = delivery_key(study_uid, provider_id, channel)
    with Session(engine) as session:
        session.add(
            ProviderDelivery(
                delivery_key=key,
                delivery_id=str(offer_id),
                provider_id=provider_id,
                study_uid=study_uid,
                channel=channel,
                status="sending",
            )
        )
        try:
            session.commit()
            return True
        except IntegrityError:
            session.rollback()
        table = ProviderDelivery.__table__  # type: ignore[attr-defined]
        result = session.execute(
            update(table)
            .where(
                table.c.delivery_key == key,
                or_(
                    table.c.status == "failed",
                    (table.c.status == "sending") & (table.c.updated_at < utc_now() - CLAIM_LEASE),
                ),
            )
            .values(status="sending", updated_at=utc_now())
        )
        session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(engine: Engine, key: str, status: str, attempts: int, detail: str) -> None:
    """Record how a claimed delivery ended (sent or failed)."""
    with Session(engine) as session:
        record = session.get(ProviderDelivery, key)
        assert record is not None, key
        record.status, record.attempts, record.detail, record.updated_at = status, attempts, detail, utc_now()
        session.add(record)
        session.commit()


def _as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive UTC, PostgreSQL aware datetimes: compare both as aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

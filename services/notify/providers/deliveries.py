"""The offers to providers as claims: each (study, provider, channel) recorded before it is sent.

An intent is recorded with the ``study.completed`` it offers, then claimed and sent
(:mod:`shared.reliability.claims`). A provider that is down postpones it without spending an
attempt; one that refuses it spends one. A claim whose sender died is taken over after its lease
and sent again with the same delivery id (the ``X-MDD-Delivery`` header, the offer's
``delivery_id`` and its event id), so the provider drops the copy.
"""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.events import StudyCompleted, utc_now
from shared.reliability.claims import FAILED, PENDING
from services.notify.providers.tables import ProviderDelivery

_DELIVERY_NAMESPACE = uuid.UUID("5f0c3c1e-8d0a-4b8e-9a55-6d1b0c2f7e41")


def delivery_id(hospital_id: str, study_uid: str, provider_id: str, provider_seed: str) -> uuid.UUID:
    """The stable id of the offer of ``study_uid`` to a provider (same on every try and channel).

    The provider's secret seed goes into it, so that nobody can test a guessed study UID against it.
    """
    return uuid.uuid5(_DELIVERY_NAMESPACE, f"{hospital_id}:{study_uid}:{provider_id}:{provider_seed}")


def delivery_key(hospital_id: str, study_uid: str, provider_id: str, channel: str) -> str:
    """Primary key of a delivery record (a study is one hospital's: its UID alone names no study)."""
    return f"{hospital_id}:{study_uid}:{provider_id}:{channel}"


def record_intents(
    engine: Engine, event: StudyCompleted, provider_id: str, offer_id: uuid.UUID, channels: list[str], reopen_failed: bool
) -> list[str]:
    """Record one intent per channel (those not recorded yet); their keys. ``reopen_failed`` retries failed ones."""
    now = utc_now()
    keys = []
    with Session(engine) as session:
        for channel in channels:
            key = delivery_key(event.hospital_id, event.study_uid, provider_id, channel)
            keys.append(key)
            known = session.get(ProviderDelivery, key)
            if known is None:
                session.add(ProviderDelivery(
                    delivery_key=key, delivery_id=str(offer_id), provider_id=provider_id, study_uid=event.study_uid,
                    channel=channel, status=PENDING, payload=event.model_dump_json(), next_attempt_at=now, updated_at=now,
                ))
            elif reopen_failed and known.status == FAILED:
                known.status, known.attempts, known.next_attempt_at = PENDING, 0, now
                session.add(known)
        session.commit()
    return keys


def load(engine: Engine, key: str) -> ProviderDelivery:
    """A delivery record, detached."""
    with Session(engine, expire_on_commit=False) as session:
        record = session.get(ProviderDelivery, key)
        assert record is not None, key
        session.expunge(record)
        return record

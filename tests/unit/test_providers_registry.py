"""Provider registry and the offers recorded as claims before they are sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.db import init_db, make_engine
from shared.events import StudyCompleted, producer, utc_now
from shared.reliability.claims import ClaimLedger
from services.notify.providers import deliveries
from services.notify.providers.registry import (
    ProviderError,
    ProviderSpec,
    add_provider,
    deactivate_provider,
    get_provider,
    init_registry,
    list_providers,
    providers_for_hospital,
)
from services.notify.providers.tables import ProviderDelivery


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'mdd.db'}")
    init_registry(engine)
    init_db(engine, [ProviderDelivery])
    return engine


def test_add_get_list_and_deactivate(engine: Engine) -> None:
    acme = add_provider(
        engine,
        ProviderSpec(
            provider_id="acme",
            display_name="Acme Teleradiología",
            hospitals=["H1", "H2", "H1"],
            webhook_url="https://acme.example/mdd",
            deidentify=True,
        ),  # type: ignore[arg-type]
    )
    add_provider(
        engine, ProviderSpec(provider_id="lectura-norte", display_name="Norte", hospitals=["H2"], kafka=True)
    )

    assert acme.hospitals == ["H1", "H2"] and acme.webhook_secret and len(acme.webhook_secret) >= 40
    stored = get_provider(engine, "acme")
    assert (stored.display_name, stored.webhook_url, stored.deidentify, stored.kafka, stored.active) == (
        "Acme Teleradiología",
        "https://acme.example/mdd",
        True,
        False,
        True,
    )
    assert stored.webhook_secret == acme.webhook_secret and stored.created_at is not None
    assert get_provider(engine, "lectura-norte").webhook_secret is None  # Kafka only: nothing to sign
    assert [p.provider_id for p in list_providers(engine)] == ["acme", "lectura-norte"]
    assert [p.provider_id for p in providers_for_hospital(engine, "H2")] == ["acme", "lectura-norte"]
    assert providers_for_hospital(engine, "H9") == []

    deactivate_provider(engine, "acme")
    assert [p.provider_id for p in providers_for_hospital(engine, "H1")] == []
    assert not get_provider(engine, "acme").active and len(list_providers(engine)) == 2


def test_duplicates_and_unknown_ids_are_clear_errors(engine: Engine) -> None:
    spec = ProviderSpec(provider_id="acme", display_name="Acme", hospitals=["H1"], kafka=True)
    add_provider(engine, spec)
    with pytest.raises(ProviderError, match="ya existe / provider already exists"):
        add_provider(engine, spec)
    with pytest.raises(ProviderError, match="desconocido / unknown"):
        get_provider(engine, "nadie")
    with pytest.raises(ProviderError, match="desconocido / unknown"):
        deactivate_provider(engine, "nadie")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"provider_id": "Acme SA"}, "invalid provider id"),
        ({"provider_id": "-acme"}, "invalid provider id"),  # must start with a letter or digit
        ({"hospitals": [" "]}, "at least one hospital"),
        ({"webhook_url": None, "kafka": False}, "needs a webhook or kafka"),
        ({"webhook_url": "ftp://acme.example"}, "URL"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "provider_id": "acme",
        "display_name": "Acme",
        "hospitals": ["H1"],
        "webhook_url": "https://a.example",
    }
    with pytest.raises(ValidationError, match=message):
        ProviderSpec(**(base | fields))  # type: ignore[arg-type]


def _event(study_uid: str) -> StudyCompleted:
    return StudyCompleted(study_uid=study_uid, hospital_id="H1", correlation_id="c", producer=producer("ingest"),
                          reason="all_views", views=[])


def test_an_offer_is_recorded_once_claimed_once_and_again_only_after_a_failure_or_an_abandoned_send(
    engine: Engine,
) -> None:
    offer_id = deliveries.delivery_id("H1", "1.2.3", "acme", "semilla")
    claims = ClaimLedger(engine, ProviderDelivery, "delivery_key", "me", lease_seconds=60)
    [key] = deliveries.record_intents(engine, _event("1.2.3"), "acme", offer_id, ["webhook"], reopen_failed=False)
    assert deliveries.record_intents(engine, _event("1.2.3"), "acme", offer_id, ["webhook"], reopen_failed=False) == [key]
    assert claims.due() == [key]
    claim = claims.claim(key)
    assert claim is not None and not claim.takeover
    assert claims.claim(key) is None  # someone is sending it
    assert ClaimLedger(engine, ProviderDelivery, "delivery_key", "other", 60).claim(key) is None

    assert claims.postpone(key, 3600, "HTTP 503", spend_attempt=False)
    assert claims.due() == [] and claims.claim(key) is None  # not due yet
    with Session(engine) as session:
        record = session.get(ProviderDelivery, key)
        assert record is not None and (record.status, record.attempts, record.retries) == ("pending", 0, 1)

    _make_due(engine, key)
    assert claims.claim(key) is not None and claims.settle(key, "failed", "HTTP 400", attempts=5)
    assert claims.claim(key) is None  # settled
    deliveries.record_intents(engine, _event("1.2.3"), "acme", offer_id, ["webhook"], reopen_failed=True)  # a replay
    assert claims.claim(key) is not None and claims.settle(key, "sent", "", attempts=1)
    deliveries.record_intents(engine, _event("1.2.3"), "acme", offer_id, ["webhook"], reopen_failed=True)
    assert claims.claim(key) is None  # sent stays sent

    [other] = deliveries.record_intents(engine, _event("1.2.4"), "acme", offer_id, ["webhook"], reopen_failed=False)
    assert claims.claim(other) is not None
    with Session(engine) as session:  # the sender died mid-send: its lease ran out
        record = session.get(ProviderDelivery, other)
        assert record is not None
        record.lease_until = utc_now() - timedelta(minutes=1)
        session.add(record)
        session.commit()
    taken = ClaimLedger(engine, ProviderDelivery, "delivery_key", "successor", 60).claim(other)
    assert taken is not None and taken.takeover
    assert not claims.settle(other, "sent")  # the dead owner can no longer settle it


def _make_due(engine: Engine, key: str) -> None:
    with Session(engine) as session:
        record = session.get(ProviderDelivery, key)
        assert record is not None
        record.next_attempt_at = utc_now() - timedelta(seconds=1)
        session.add(record)
        session.commit()


def test_the_delivery_id_is_stable_per_study_and_provider_and_keyed_by_its_secret_seed() -> None:
    first = deliveries.delivery_id("H1", "1.2.3", "acme", "semilla")
    assert first == deliveries.delivery_id("H1", "1.2.3", "acme", "semilla")
    assert first != deliveries.delivery_id("H1", "1.2.3", "norte", "semilla")
    assert first != deliveries.delivery_id("H1", "1.2.4", "acme", "semilla")
    assert first != deliveries.delivery_id("H1", "1.2.3", "acme", "otra-semilla")
    assert first != deliveries.delivery_id("H2", "1.2.3", "acme", "semilla")  # another hospital's study with the same UID

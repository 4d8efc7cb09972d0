"""Provider registry and the claim-before-send records of deliveries."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.db import init_db, make_engine
from shared.events import utc_now
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


def test_a_delivery_is_claimed_once_and_again_only_after_a_failure_or_an_abandoned_send(
    engine: Engine,
) -> None:
    offer_id = deliveries.delivery_id("1.2.3", "acme", "semilla")
    key = deliveries.delivery_key("1.2.3", "acme", "webhook")
    assert deliveries.needs_sending(engine, key)
    assert deliveries.claim(engine, "1.2.3", "acme", "webhook", offer_id)
    assert not deliveries.claim(engine, "1.2.3", "acme", "webhook", offer_id)  # someone is sending it
    assert not deliveries.needs_sending(engine, key)

    deliveries.finish(engine, key, "failed", 5, "HTTP 500")
    assert deliveries.needs_sending(engine, key) and deliveries.claim(
        engine, "1.2.3", "acme", "webhook", offer_id
    )
    deliveries.finish(engine, key, "sent", 1, "")
    assert not deliveries.needs_sending(engine, key) and not deliveries.claim(
        engine, "1.2.3", "acme", "webhook", offer_id
    )

    other = deliveries.delivery_key("1.2.4", "acme", "webhook")
    assert deliveries.claim(engine, "1.2.4", "acme", "webhook", offer_id)
    with Session(engine) as session:  # the sender died mid-send long ago
        record = session.get(ProviderDelivery, other)
        assert record is not None
        record.updated_at = utc_now() - deliveries.CLAIM_LEASE - timedelta(minutes=1)
        session.add(record)
        session.commit()
    assert deliveries.needs_sending(engine, other) and deliveries.claim(
        engine, "1.2.4", "acme", "webhook", offer_id
    )


def test_the_delivery_id_is_stable_per_study_and_provider_and_keyed_by_its_secret_seed() -> None:
    first = deliveries.delivery_id("1.2.3", "acme", "semilla")
    assert first == deliveries.delivery_id("1.2.3", "acme", "semilla")
    assert first != deliveries.delivery_id("1.2.3", "norte", "semilla")
    assert first != deliveries.delivery_id("1.2.4", "acme", "semilla")
    assert first != deliveries.delivery_id("1.2.3", "acme", "otra-semilla")

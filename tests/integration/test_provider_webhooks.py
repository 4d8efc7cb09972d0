"""External providers against real servers: registered with ``mdd provider add``, they receive a
signed webhook, verify it and download every instance through its presigned MinIO URL; a Kafka
provider reads its offer from its own topic with the SASL credentials the command printed."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr
from pydicom import dcmread
from sqlmodel import Session
from typer.testing import CliRunner

from infra.servers import KafkaInfo, kafka_server
from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.events import ProviderStudyOffer, StudyCompleted, parse_event, producer, utc_now
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy
from shared.topics import provider_topic
from services.cli import app
from services.notify.providers import deliveries
from shared.reliability.claims import ClaimLedger
from services.notify.providers.mapping import record_mapping, reidentify
from services.notify.providers.registry import (
    ProviderSpec,
    add_provider,
    init_registry,
    providers_for_hospital,
)
from services.notify.providers.signing import verify_signature
from services.notify.providers.subscriber import register_providers
from services.notify.providers.tables import DeidStudyMap, ProviderDelivery
from tests.provider_support import WebhookReceiver, stage_study, webhook_receiver

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def minio_settings(settings: Settings, minio) -> Settings:  # type: ignore[no-untyped-def]
    suffix = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "store_backend": "minio",
            "minio_endpoint": minio.endpoint,
            "minio_access_key": minio.access_key,
            "minio_secret_key": minio.secret_key,
            "bucket_dicom": f"it-dicom-{suffix}",
            "bucket_derived": f"it-derived-{suffix}",
            "bucket_results": f"it-results-{suffix}",
            "provider_link_ttl_seconds": 3600,
            "provider_delivery_attempts": 3,
            "provider_retry_backoff_seconds": 0.01,
        }
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as server:
        yield server


@pytest.fixture
async def ctx(minio_settings: Settings) -> AsyncIterator[ServiceContext]:
    context = build_context(minio_settings)
    register_providers(context)
    await context.bus.start()
    yield context
    await context.bus.stop()
    context.engine.dispose()


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[KafkaInfo]:
    """A broker that requires SCRAM-SHA-512 and denies everything without an ACL."""
    with kafka_server(sasl=True) as info:
        yield info


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "MDD_DATA_DIR": str(settings.data_dir),
        "MDD_STORE_BACKEND": settings.store_backend,
        "MDD_MINIO_ENDPOINT": settings.minio_endpoint,
        "COLUMNS": "250",
        **extra,
    }


def _cli(settings: Settings, *args: str, expect: int = 0, **env: str) -> str:
    """Run ``mdd`` as an operator would, on the same database and store as the service."""
    result = runner.invoke(app, list(args), env=_env(settings, **env))
    assert result.exit_code == expect, result.output
    return result.output


def _secret(output: str) -> str:
    match = re.search(r"shown only once; keep it\):\n(\S+)\n", output)
    assert match, output
    return match.group(1)


async def _complete_twice(ctx: ServiceContext, study: SyntheticStudy, hospital_id: str) -> None:
    event = stage_study(ctx, study, hospital_id)
    assert isinstance(ctx.bus, MemoryBus)
    await ctx.bus.publish(event)
    await ctx.bus.drain()
    await ctx.bus.publish(event.model_copy(update={"event_id": uuid.uuid4()}))  # a redelivered completion
    await ctx.bus.drain()


def _originals(study: SyntheticStudy) -> dict[tuple[str, str], bytes]:
    return {(view.laterality, view.view): view.to_bytes() for view in study.views}


def _download(offer: dict[str, object]) -> dict[tuple[str, str], bytes]:
    files: dict[tuple[str, str], bytes] = {}
    for instance in offer["instances"]:  # type: ignore[attr-defined]
        response = httpx.get(instance["url"], timeout=30)
        assert response.status_code == 200, response.text
        assert hashlib.sha256(response.content).hexdigest() == instance["sha256"]
        assert len(response.content) == instance["size_bytes"]
        files[(instance["laterality"], instance["view_position"])] = response.content
    return files


async def test_providers_get_signed_offers_and_download_the_study_once(
    minio_settings: Settings, ctx: ServiceContext, receiver: WebhookReceiver, four_view_study: SyntheticStudy
) -> None:
    added = _cli(
        minio_settings,
        "provider",
        "add",
        "acme",
        "--nombre",
        "Acme Teleradiología",
        "--hospital",
        "H1",
        "--webhook",
        receiver.url("/acme"),
        "--deidentify",
    )
    acme_secret = _secret(added)
    plain_secret = _secret(
        _cli(
            minio_settings,
            "provider",
            "add",
            "completo",
            "--nombre",
            "Lectura Completa",
            "--hospital",
            "H1",
            "--hospital",
            "H3",
            "--webhook",
            receiver.url("/completo"),
        )
    )
    _cli(
        minio_settings,
        "provider",
        "add",
        "otro",
        "--nombre",
        "Otro Hospital",
        "--hospital",
        "H2",
        "--webhook",
        receiver.url("/otro"),
    )
    listing = _cli(minio_settings, "provider", "list")
    assert all(name in listing for name in ("acme", "Acme Teleradiología", "completo", "otro", "H2"))
    assert acme_secret not in listing and plain_secret not in listing

    await _complete_twice(ctx, four_view_study, "H1")
    originals = _originals(four_view_study)

    # the de-identifying provider: one signed POST, de-identified files behind the links
    [post] = receiver.posts_to("/acme")
    verify_signature(acme_secret, post.body, post.headers["x-mdd-signature"])
    offer = json.loads(post.body)
    assert (
        post.headers["x-mdd-delivery"] == offer["delivery_id"]
        and post.headers["x-mdd-event"] == "provider.study"
    )
    assert offer["provider_id"] == "acme" and offer["hospital_id"] == "H1" and offer["deidentified"] is True
    assert offer["study_uid"] != four_view_study.study_uid
    assert offer["accession_number"] not in ("", four_view_study.accession_number)
    expires = ProviderStudyOffer.model_validate_json(post.body).links_expire_at
    assert expires is not None and abs(expires - (utc_now() + timedelta(hours=1))) < timedelta(minutes=2)
    assert four_view_study.patient_id.encode() not in post.body
    downloaded = await asyncio.to_thread(_download, offer)
    assert set(downloaded) == set(originals)
    for view, data in downloaded.items():
        copy, original = dcmread(io.BytesIO(data)), dcmread(io.BytesIO(originals[view]))
        assert (
            copy.StudyInstanceUID == offer["study_uid"] and copy.AccessionNumber == offer["accession_number"]
        )
        assert str(copy.PatientName) != str(original.PatientName) and copy.PatientID != original.PatientID
        assert copy.PatientBirthDate != original.PatientBirthDate and copy.PatientIdentityRemoved == "YES"
        assert copy.PixelData == original.PixelData
    assert reidentify(ctx.engine, "acme", offer["study_uid"]) == four_view_study.study_uid

    # the provider that reads identified studies gets the original files, signed with its own secret
    [plain] = receiver.posts_to("/completo")
    verify_signature(plain_secret, plain.body, plain.headers["x-mdd-signature"])
    with pytest.raises(ValueError):
        verify_signature(acme_secret, plain.body, plain.headers["x-mdd-signature"])
    plain_offer = json.loads(plain.body)
    assert plain_offer["study_uid"] == four_view_study.study_uid and plain_offer["deidentified"] is False
    assert await asyncio.to_thread(_download, plain_offer) == originals
    assert plain_offer["delivery_id"] != offer["delivery_id"]

    # a provider of another hospital receives nothing
    assert receiver.posts_to("/otro") == []

    # links are signed: a forged signature is refused by the store
    forged = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, offer["instances"][0]["url"])
    assert (await asyncio.to_thread(httpx.get, forged, timeout=30)).status_code == 403


async def test_kafka_providers_get_the_same_offer_on_their_own_topic_without_identity(
    ctx: ServiceContext, four_view_study: SyntheticStudy
) -> None:
    add_provider(
        ctx.engine,
        ProviderSpec(provider_id="cola", display_name="Cola", hospitals=["H1"], kafka=True, deidentify=True),
    )

    await _complete_twice(ctx, four_view_study, "H1")

    assert isinstance(ctx.bus, MemoryBus)
    topic = provider_topic(ctx.settings.topic_prefix, "cola")
    [payload] = [payload for sent_topic, payload in ctx.bus.sent if sent_topic == topic]
    offer = parse_event(payload)
    assert isinstance(offer, ProviderStudyOffer) and offer.provider_id == "cola" and offer.deidentified
    identity = dcmread(io.BytesIO(four_view_study.views[0].to_bytes()))
    for value in (
        str(identity.PatientName),
        identity.PatientID,
        four_view_study.study_uid,
        four_view_study.accession_number,
    ):
        assert value.encode() not in payload
    files = await asyncio.to_thread(_download, offer.model_dump(mode="json"))
    assert {dcmread(io.BytesIO(data)).StudyInstanceUID for data in files.values()} == {offer.study_uid}
    assert reidentify(ctx.engine, "cola", offer.study_uid) == four_view_study.study_uid


def _sasl_env(kafka: KafkaInfo) -> dict[str, str]:
    assert kafka.username and kafka.password
    return {
        "MDD_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MDD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MDD_KAFKA_SASL_USERNAME": kafka.username,
        "MDD_KAFKA_SASL_PASSWORD": kafka.password,
    }


def _printed(output: str, label: str) -> str:
    match = re.search(rf"^  {re.escape(label)}: (\S+)$", output, flags=re.MULTILINE)
    assert match, output
    return match.group(1)


async def test_a_kafka_provider_added_by_the_cli_reads_its_offer_with_the_printed_credentials(
    settings: Settings, sasl_kafka: KafkaInfo, four_view_study: SyntheticStudy
) -> None:
    output = _cli(
        settings,
        "provider",
        "add",
        "cola",
        "--nombre",
        "Cola de Lectura",
        "--hospital",
        "H1",
        "--kafka",
        "--deidentify",
        **_sasl_env(sasl_kafka),
    )
    username = _printed(output, "usuario / username")
    password = _printed(output, "contraseña / password")
    topic, group = _printed(output, "tópico / topic"), _printed(output, "grupo / group")
    assert topic == "mdd.provider.cola" and "*" not in password
    assert "webhook secret" not in output  # Kafka only: nothing to sign

    service_settings = settings.model_copy(
        update={
            "transport": "kafka",
            "kafka_bootstrap": sasl_kafka.bootstrap,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_username": sasl_kafka.username,
            "kafka_sasl_password": SecretStr(sasl_kafka.password or ""),
        }
    )
    ctx = build_context(service_settings)
    register_providers(ctx)
    await ctx.bus.start()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=sasl_kafka.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=username,
        sasl_plain_password=password,
    )
    try:
        await ctx.bus.publish(stage_study(ctx, four_view_study, "H1"))
        await consumer.start()
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
        await ctx.bus.stop()
        ctx.engine.dispose()
    assert record.value is not None
    offer = parse_event(record.value)
    assert isinstance(offer, ProviderStudyOffer) and offer.provider_id == "cola" and offer.deidentified
    assert record.key == offer.study_uid.encode() and offer.study_uid != four_view_study.study_uid
    assert four_view_study.patient_id.encode() not in record.value
    assert offer.links_note  # embedded store here: the offer says it carries no links


def test_a_failed_kafka_provisioning_leaves_no_provider_behind(
    settings: Settings, sasl_kafka: KafkaInfo
) -> None:
    # plaintext towards a SASL broker: provisioning fails, the registration is undone
    output = _cli(
        settings,
        "provider",
        "add",
        "cola",
        "--nombre",
        "Cola",
        "--hospital",
        "H1",
        "--kafka",
        expect=1,
        MDD_KAFKA_BOOTSTRAP=sasl_kafka.bootstrap,
    )
    assert "Kafka access failed" in output
    assert "cola" not in _cli(settings, "provider", "list")


def test_registry_claims_and_mappings_work_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        init_registry(engine)
        init_db(engine, [ProviderDelivery, DeidStudyMap])
        add_provider(
            engine, ProviderSpec(provider_id="acme", display_name="Acme", hospitals=["H1", "H2"], kafka=True)
        )
        assert [p.hospitals for p in providers_for_hospital(engine, "H2")] == [["H1", "H2"]]

        offer_id = deliveries.delivery_id("H2", "1.2.3", "acme", "semilla")
        event = StudyCompleted(study_uid="1.2.3", hospital_id="H2", correlation_id="c", producer=producer("ingest"),
                               reason="all_views", views=[])
        [key] = deliveries.record_intents(engine, event, "acme", offer_id, ["kafka"], reopen_failed=False)
        claims = ClaimLedger(engine, ProviderDelivery, "delivery_key", "me", lease_seconds=60)
        assert claims.claim(key) is not None
        assert claims.claim(key) is None  # a fresh claim, its lease compared across time zones
        with Session(engine) as session:
            record = session.get(ProviderDelivery, key)
            assert record is not None
            record.lease_until = utc_now() - timedelta(minutes=1)  # its sender died
            session.add(record)
            session.commit()
        taken = ClaimLedger(engine, ProviderDelivery, "delivery_key", "successor", lease_seconds=60).claim(key)
        assert taken is not None and taken.takeover

        mapping = {
            "provider_id": "acme",
            "deid_study_uid": "2.99",
            "study_uid": "1.2.3",
            "accession_number": "A1",
        }
        record_mapping(engine, DeidStudyMap(**mapping))
        record_mapping(engine, DeidStudyMap(**mapping))
        assert reidentify(engine, "acme", "2.99") == "1.2.3"
    finally:
        engine.dispose()

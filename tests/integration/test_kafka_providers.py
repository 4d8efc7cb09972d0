"""External providers on a SASL/SCRAM broker with ACLs: each reads its own topic and nothing else.

One real KRaft broker for the module, started by infra.servers with SASL_PLAINTEXT/SCRAM-SHA-512,
the StandardAuthorizer and no access without an ACL. The project talks to it as the admin super
user; providers connect with the credentials that provision_provider_access hands out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr, ValidationError

from infra.servers import KafkaInfo, kafka_server
from services.notify.providers.kafka_access import (
    ProviderAccessError,
    ProviderKafkaAccess,
    provision_provider_access,
    revoke_provider_access,
)
from shared.bus import KafkaBus
from shared.errors import ConfigurationError
from shared.events import StudyCompleted, producer
from shared.kafka_security import aiokafka_options
from shared.settings import Settings

INTERNAL_TOPIC = "mdd.study.completed"


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[KafkaInfo]:
    """A broker that requires SCRAM-SHA-512 and denies everything without an ACL."""
    with kafka_server(sasl=True) as info:
        yield info


@pytest.fixture(scope="module")
def admin_settings(sasl_kafka: KafkaInfo, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The project's settings, authenticated as the broker's super user (their own data folder)."""
    return Settings(
        data_dir=tmp_path_factory.mktemp("sasl-var"),
        transport="kafka",
        kafka_bootstrap=sasl_kafka.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=sasl_kafka.username,
        kafka_sasl_password=sasl_kafka.password,
        retry_backoff_seconds=0.01,
    )


async def publish_as_admin(settings: Settings, messages: dict[str, bytes]) -> None:
    """Publish one message per topic with the admin credentials."""
    producer_ = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **aiokafka_options(settings))
    await producer_.start()
    try:
        for topic, payload in messages.items():
            await producer_.send_and_wait(topic, payload, key=b"1.2.3")
    finally:
        await producer_.stop()


@pytest.fixture(scope="module")
def providers(admin_settings: Settings) -> dict[str, ProviderKafkaAccess]:
    """Providers acme and beta, and one message on each provider topic and on an internal topic."""
    access = {pid: provision_provider_access(admin_settings, pid) for pid in ("acme", "beta")}
    asyncio.run(
        publish_as_admin(
            admin_settings,
            {access["acme"].topic: b"para acme", access["beta"].topic: b"para beta", INTERNAL_TOPIC: b"interno"},
        )
    )
    return access


def consumer_for(access: ProviderKafkaAccess, topic: str, *, group: str | None = None, password: str | None = None) -> AIOKafkaConsumer:
    """An aiokafka consumer configured the way the provider's own code would be."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=access.bootstrap,
        group_id=group or access.group,
        auto_offset_reset="earliest",
        security_protocol=access.security_protocol,
        sasl_mechanism=access.sasl_mechanism,
        sasl_plain_username=access.username,
        sasl_plain_password=password or access.password.get_secret_value(),
    )


async def read_one(consumer: AIOKafkaConsumer) -> bytes:
    """Start the consumer, return the first message's value, stop it."""
    try:
        await consumer.start()
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert record.value is not None
        return record.value
    finally:
        await consumer.stop()


async def authenticate(bootstrap: str, username: str, password: str) -> None:
    """Open (and close) one SASL/SCRAM connection; raises SaslAuthenticationFailed on bad credentials."""
    host, port = bootstrap.rsplit(":", 1)
    conn = await create_conn(
        host, int(port), security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=username, sasl_plain_password=password,
    )
    conn.close()


def test_provisioning_returns_the_provider_credentials(providers: dict[str, ProviderKafkaAccess], sasl_kafka: KafkaInfo) -> None:
    acme = providers["acme"]
    assert (acme.username, acme.topic, acme.group) == ("provider-acme", "mdd.provider.acme", "provider-acme")
    assert acme.bootstrap == sasl_kafka.bootstrap and acme.security_protocol == "SASL_PLAINTEXT"
    assert len(acme.password.get_secret_value()) >= 32
    assert acme.password.get_secret_value() != providers["beta"].password.get_secret_value()
    assert "**" in repr(acme) and acme.password.get_secret_value() not in repr(acme)


async def test_provider_reads_its_own_topic_in_its_own_group(providers: dict[str, ProviderKafkaAccess]) -> None:
    acme = providers["acme"]
    assert await read_one(consumer_for(acme, acme.topic)) == b"para acme"


async def test_provider_is_refused_another_providers_topic(providers: dict[str, ProviderKafkaAccess]) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await read_one(consumer_for(providers["acme"], providers["beta"].topic))


async def test_provider_is_refused_internal_topics(providers: dict[str, ProviderKafkaAccess]) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await read_one(consumer_for(providers["acme"], INTERNAL_TOPIC))


async def test_provider_is_refused_another_consumer_group(providers: dict[str, ProviderKafkaAccess]) -> None:
    acme = providers["acme"]
    for group in ("provider-beta", "provider-acme2", "mdd.notify"):
        with pytest.raises(GroupAuthorizationFailedError):
            await read_one(consumer_for(acme, acme.topic, group=group))


async def test_wrong_password_fails_authentication(providers: dict[str, ProviderKafkaAccess]) -> None:
    acme = providers["acme"]
    with pytest.raises(SaslAuthenticationFailed):
        await authenticate(acme.bootstrap, acme.username, "contraseña-equivocada")
    with pytest.raises(KafkaConnectionError):
        await read_one(consumer_for(acme, acme.topic, password="contraseña-equivocada"))
    await authenticate(acme.bootstrap, acme.username, acme.password.get_secret_value())  # the right one still works


async def test_reprovisioning_rotates_the_password_and_revoke_removes_access(admin_settings: Settings) -> None:
    first = provision_provider_access(admin_settings, "gamma")
    await publish_as_admin(admin_settings, {first.topic: b"uno"})
    second = provision_provider_access(admin_settings, "gamma")
    assert second.topic == first.topic and second.password != first.password
    with pytest.raises(SaslAuthenticationFailed):
        await authenticate(first.bootstrap, first.username, first.password.get_secret_value())
    assert await read_one(consumer_for(second, second.topic)) == b"uno"  # the topic and its message were kept

    # A consumer connected before the revocation loses access too: its ACLs are gone.
    connected = consumer_for(second, second.topic)
    await connected.start()
    try:
        revoke_provider_access(admin_settings, "gamma")
        await publish_as_admin(admin_settings, {second.topic: b"dos"})
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            await asyncio.wait_for(connected.getone(), timeout=30)
    finally:
        await connected.stop()
    with pytest.raises(SaslAuthenticationFailed):
        await authenticate(second.bootstrap, second.username, second.password.get_secret_value())
    revoke_provider_access(admin_settings, "gamma")  # revoking twice is not an error


async def test_revoking_one_provider_leaves_the_others_alone(admin_settings: Settings) -> None:
    delta = provision_provider_access(admin_settings, "delta")
    epsilon = provision_provider_access(admin_settings, "epsilon")
    await publish_as_admin(admin_settings, {epsilon.topic: b"para epsilon"})
    revoke_provider_access(admin_settings, "delta", delete_topic=True)
    assert await read_one(consumer_for(epsilon, epsilon.topic)) == b"para epsilon"
    with pytest.raises(SaslAuthenticationFailed):
        await authenticate(delta.bootstrap, delta.username, delta.password.get_secret_value())


@pytest.mark.parametrize("bad_id", ["", "Acme", "acme*", "acme.beta", "-acme", "acme-", "a" * 64, "../x", "acme beta"])
def test_bad_provider_id_is_rejected_with_a_clear_error(admin_settings: Settings, bad_id: str) -> None:
    with pytest.raises(ValueError, match="proveedor inválido / invalid provider id"):
        provision_provider_access(admin_settings, bad_id)
    with pytest.raises(ValueError, match="proveedor inválido / invalid provider id"):
        revoke_provider_access(admin_settings, bad_id)


def test_provisioning_needs_a_sasl_broker(sasl_kafka: KafkaInfo) -> None:
    with pytest.raises(ProviderAccessError, match="SASL"):
        provision_provider_access(Settings(kafka_bootstrap=sasl_kafka.bootstrap), "acme")


def test_sasl_settings_need_credentials() -> None:
    with pytest.raises(ValidationError, match="MDD_KAFKA_SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="mdd")


async def test_kafka_bus_works_on_the_sasl_broker_with_settings_credentials(admin_settings: Settings) -> None:
    prefix = f"sasl{uuid.uuid4().hex[:8]}."
    settings = admin_settings.model_copy(update={"topic_prefix": prefix})
    bus = KafkaBus(settings, client_id="it-sasl")
    received: list[StudyCompleted] = []

    async def handle(event: StudyCompleted) -> None:
        received.append(event)

    bus.subscribe(StudyCompleted, handle, service="preprocess")
    await bus.start()
    try:
        sent = StudyCompleted(
            study_uid="1.2.840.99", hospital_id="H", correlation_id="c", producer=producer("ingest"),
            reason="all_views", views=[],
        )
        await bus.publish(sent)
        deadline = asyncio.get_running_loop().time() + 60
        while not received:
            assert asyncio.get_running_loop().time() < deadline, "el evento no llegó / event not delivered"
            await asyncio.sleep(0.1)
    finally:
        await bus.stop()
    assert received[0].event_id == sent.event_id and received[0].study_uid == "1.2.840.99"


async def test_kafka_bus_with_a_wrong_password_does_not_start(admin_settings: Settings) -> None:
    settings = admin_settings.model_copy(update={"kafka_sasl_password": SecretStr("contraseña-equivocada")})
    bus = KafkaBus(settings, client_id="it-sasl-bad")
    with pytest.raises(ConfigurationError, match="MDD_KAFKA_SASL_PASSWORD"):  # at once: waiting would not help
        await bus.start()
    await bus.stop()

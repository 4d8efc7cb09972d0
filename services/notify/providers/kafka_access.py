"""Kafka access for an external provider: its own SCRAM user, its own topic, ACLs for nothing else.

A provider ``acme`` gets the SCRAM-SHA-512 user ``provider-acme``, the topic ``mdd.provider.acme``
and exactly three ACLs, all on literal names (a prefix ACL could match ``acme2``'s resources):
READ and DESCRIBE on its topic, READ on its consumer group ``provider-acme``. The broker must deny
everything without an ACL (``allow.everyone.if.no.acl.found=false``), so the provider can neither
read internal topics nor another provider's topic, nor use another group.

Provisioning is idempotent: running it again keeps the topic and ACLs and rotates the password.
The calls are made with the project's own Kafka credentials (``MDD_KAFKA_SASL_*``), which must be
allowed to alter users, create topics and create ACLs (a super user, or ALTER on the cluster).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import BaseModel, ConfigDict, SecretStr

from shared.kafka_security import librdkafka_options
from shared.settings import Settings
from shared.topics import provider_topic

log = logging.getLogger("mdd.notify.providers")

PROVIDER_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
REQUEST_TIMEOUT_S = 30.0


class ProviderAccessError(RuntimeError):
    """The broker refused or failed a provisioning step (the message says which, es-MX / en)."""


class ProviderKafkaAccess(BaseModel):
    """What a provider receives to read its topic: credentials, topic, consumer group, connection."""

    model_config = ConfigDict(frozen=True)

    username: str
    password: SecretStr
    topic: str
    group: str
    bootstrap: str
    security_protocol: str
    sasl_mechanism: str = SCRAM_MECHANISM


def validate_provider_id(provider_id: str) -> str:
    """Return ``provider_id`` if it is a slug (a-z, 0-9, inner hyphens, ≤63); raise ValueError otherwise."""
    if not isinstance(provider_id, str) or not PROVIDER_ID_PATTERN.fullmatch(provider_id):
        raise ValueError(
            f"Identificador de proveedor inválido / invalid provider id: {provider_id!r} "
            "(minúsculas, dígitos y guiones internos, máx. 63 / lowercase letters, digits and inner hyphens, max 63)"
        )
    return provider_id


def provider_principal_name(provider_id: str) -> str:
    """Kafka user name (and consumer group) of a provider, e.g. ``provider-acme``."""
    return f"provider-{validate_provider_id(provider_id)}"


def provider_acls(settings: Settings, provider_id: str) -> list[AclBinding]:
    """The ACLs a provider gets: READ+DESCRIBE on its topic, READ on its group, literal names only."""
    name = provider_principal_name(provider_id)
    principal = f"User:{name}"
    topic = provider_topic(settings.topic_prefix, provider_id)

    def allow(resource: ResourceType, resource_name: str, operation: AclOperation) -> AclBinding:
        return AclBinding(
            resource, resource_name, ResourcePatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW
        )

    return [
        allow(ResourceType.TOPIC, topic, AclOperation.READ),
        allow(ResourceType.TOPIC, topic, AclOperation.DESCRIBE),
        allow(ResourceType.GROUP, name, AclOperation.READ),
    ]


def provision_provider_access(settings: Settings, provider_id: str) -> ProviderKafkaAccess:
    """Create (or refresh) a provider's SCRAM user, topic and ACLs; return what to hand to the provider.

    A second call for the same provider rotates the password; the previous one stops working.
    """
    name = provider_principal_name(provider_id)
    topic = provider_topic(settings.topic_prefix, provider_id)
    admin = _admin(settings)
    topic_futures = admin.create_topics(
        [NewTopic(topic, num_partitions=settings.kafka_partitions, replication_factor=settings.kafka_replication_factor)],
        request_timeout=REQUEST_TIMEOUT_S,
    )
    _wait(topic_futures, f"crear el tópico / create topic {topic}", tolerate={KafkaError.TOPIC_ALREADY_EXISTS})
    _wait(
        admin.create_acls(provider_acls(settings, provider_id), request_timeout=REQUEST_TIMEOUT_S),
        f"crear ACL de / create ACLs for {name}",
    )
    # The credential comes last: a provider never holds a password before its ACLs are in place.
    password = secrets.token_urlsafe(32)
    upsert = UserScramCredentialUpsertion(
        name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode()
    )
    _wait(
        admin.alter_user_scram_credentials([upsert], request_timeout=REQUEST_TIMEOUT_S),
        f"crear el usuario SCRAM / create SCRAM user {name}",
    )
    log.info("Acceso Kafka listo / Kafka access provisioned: user=%s topic=%s", name, topic)
    return ProviderKafkaAccess(
        username=name,
        password=SecretStr(password),
        topic=topic,
        group=name,
        bootstrap=settings.kafka_bootstrap,
        security_protocol=settings.kafka_security_protocol,
    )


def revoke_provider_access(settings: Settings, provider_id: str, *, delete_topic: bool = False) -> None:
    """Remove a provider's ACLs and SCRAM credential (and its topic if ``delete_topic``).

    New connections with the old password are refused at once; requests on connections that were
    already open are refused because the ACLs are gone. Revoking an unknown provider is not an error.
    """
    name = provider_principal_name(provider_id)
    admin = _admin(settings)
    acl_filter = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{name}", None, AclOperation.ANY, AclPermissionType.ANY
    )
    _wait(admin.delete_acls([acl_filter], request_timeout=REQUEST_TIMEOUT_S), f"borrar ACL de / delete ACLs of {name}")
    deletion = UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)
    _wait(
        admin.alter_user_scram_credentials([deletion], request_timeout=REQUEST_TIMEOUT_S),
        f"borrar el usuario SCRAM / delete SCRAM user {name}",
        tolerate={KafkaError.RESOURCE_NOT_FOUND},
    )
    if delete_topic:
        topic = provider_topic(settings.topic_prefix, provider_id)
        _wait(
            admin.delete_topics([topic], request_timeout=REQUEST_TIMEOUT_S),
            f"borrar el tópico / delete topic {topic}",
            tolerate={KafkaError.UNKNOWN_TOPIC_OR_PART},
        )
    log.info("Acceso Kafka revocado / Kafka access revoked: user=%s", name)


def _admin(settings: Settings) -> AdminClient:
    if settings.kafka_security_protocol == "PLAINTEXT":
        raise ProviderAccessError(
            "El acceso de proveedores requiere Kafka con SASL (MDD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT o SASL_SSL) "
            "/ provider access needs a SASL-enabled Kafka"
        )
    return AdminClient({**librdkafka_options(settings), "client.id": "mdd-provider-admin", "logger": log})


def _wait(futures: Mapping[Any, Future[Any]], step: str, tolerate: set[int] | None = None) -> None:
    """Wait for every future of one admin call; raise ProviderAccessError naming the step on failure."""
    for future in futures.values():
        try:
            future.result(timeout=REQUEST_TIMEOUT_S + 5)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and tolerate and error.code() in tolerate:
                continue
            reason = error.str() if error is not None else str(exc)
            raise ProviderAccessError(f"Falló / failed: {step}: {reason}") from exc
        except TimeoutError as exc:
            raise ProviderAccessError(f"Falló / failed: {step}: sin respuesta del broker / broker timed out") from exc

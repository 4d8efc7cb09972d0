"""How every Kafka client of the project authenticates, from ``MDD_KAFKA_SECURITY_PROTOCOL`` and friends.

One function per client library: FastStream (the bus), aiokafka (admin, test consumers) and
librdkafka through confluent-kafka (user, ACL and topic provisioning). ``SASL_SSL`` verifies the
broker with the system's trusted certificate authorities.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.settings import Settings

_FASTSTREAM_SASL: dict[str, Callable[..., BaseSecurity]] = {
    "SCRAM-SHA-512": SASLScram512,
    "SCRAM-SHA-256": SASLScram256,
    "PLAIN": SASLPlaintext,
}


def _credentials(settings: Settings) -> tuple[str, str]:
    # Settings already refuses SASL without both; this keeps type checkers and direct callers honest.
    if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
        raise ValueError("Faltan usuario/contraseña SASL de Kafka / missing Kafka SASL credentials")
    return settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """The FastStream security object for ``KafkaBroker(security=...)``; None for PLAINTEXT."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    username, password = _credentials(settings)
    use_ssl = settings.kafka_security_protocol == "SASL_SSL"
    return _FASTSTREAM_SASL[settings.kafka_sasl_mechanism](
        username,
        password,
        ssl_context=ssl.create_default_context() if use_ssl else None,
        use_ssl=use_ssl,
    )


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (producer, consumer, admin); empty for PLAINTEXT."""
    from faststream.kafka.security import parse_security

    return parse_security(faststream_security(settings))


def librdkafka_options(settings: Settings) -> dict[str, str]:
    """confluent-kafka (librdkafka) configuration: bootstrap servers plus authentication."""
    options = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol != "PLAINTEXT":
        username, password = _credentials(settings)
        options |= {"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": username, "sasl.password": password}
    return options

"""compose.yaml's Kafka: the very start script the kafka service runs, with the Kafka jars of the tests.

Clients must log in with SCRAM-SHA-512 as the services do; no login, a wrong password or a user without
ACLs gets nothing; the storage is formatted once and the credential survives a kill -9 and a restart.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from infra.servers import INFRA_DIR, free_ports, kafka_libs
from shared.kafka_security import aiokafka_options
from shared.settings import Settings

SCRIPT = INFRA_DIR / "kafka" / "compose-start.sh"
START_TIMEOUT_S = 120.0


class ComposeKafka:
    """The compose start script run as a process, restartable on the same data folder."""

    def __init__(self, folder: Path, password: str) -> None:
        self.port, controller_port = free_ports(2)
        self.folder, self.password = folder, password
        self.env = {
            **os.environ,
            "KAFKA_SERVICES_PASSWORD": password,
            "KAFKA_CONTROLLER_PASSWORD": secrets.token_hex(16),
            "KAFKA_LIBS": str(kafka_libs()),
            "KAFKA_DATA_DIR": str(folder / "data"),
            "KAFKA_CONFIG_DIR": str(folder / "config"),
            "KAFKA_ADVERTISED_HOST": "127.0.0.1",
            "KAFKA_LISTEN_HOST": "127.0.0.1",
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(controller_port),
            "KAFKA_LOG4J_CONFIG": str(INFRA_DIR / "kafka" / "log4j2.properties"),
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.folder / "kafka.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(["sh", str(SCRIPT)], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def settings(self, username: str = "mdd-services", password: str | None = None) -> Settings:
        return Settings(
            kafka_bootstrap=f"127.0.0.1:{self.port}", kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=username,
            kafka_sasl_password=password or self.password,
        )


@pytest.fixture
def compose_kafka(tmp_path: Path) -> Iterator[ComposeKafka]:
    broker = ComposeKafka(tmp_path, secrets.token_hex(24))
    broker.start()
    try:
        yield broker
    finally:
        if broker.process and broker.process.poll() is None:
            broker.kill()


async def _round_trip(settings: Settings, topic: str, timeout: float) -> bytes:
    """Produce one message and read it back; retried until the broker answers or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **aiokafka_options(settings))
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"hola")
            finally:
                await producer.stop()
            break
        except (KafkaError, OSError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id="mdd-prueba", auto_offset_reset="earliest",
        **aiokafka_options(settings),
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 60)
        return message.value or b""
    finally:
        await consumer.stop()


async def _refused(settings: Settings, topic: str) -> BaseException:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000,
                                **aiokafka_options(settings))
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, b"intruso"), 15)
    except (KafkaError, asyncio.TimeoutError, OSError) as exc:
        return exc
    finally:
        await producer.stop()
    raise AssertionError(f"{settings.kafka_sasl_username or 'anonymous'} could write to {topic}")


async def test_the_compose_broker_takes_only_the_services_scram_login_and_keeps_it_across_a_kill(
    compose_kafka: ComposeKafka,
) -> None:
    assert await _round_trip(compose_kafka.settings(), "mdd.instance.stored", START_TIMEOUT_S) == b"hola"
    wrong = await _refused(compose_kafka.settings(password="otra-contrasena"), "mdd.instance.stored")
    assert "uthentication" in repr(wrong) or isinstance(wrong, KafkaError)
    anonymous = Settings(kafka_bootstrap=f"127.0.0.1:{compose_kafka.port}")
    await _refused(anonymous, "mdd.instance.stored")

    compose_kafka.kill()
    compose_kafka.start()  # the data folder is formatted already: the script must not format it again
    assert await _round_trip(compose_kafka.settings(), "mdd.study.completed", START_TIMEOUT_S) == b"hola"
    assert (compose_kafka.folder / "data" / "meta.properties").exists()

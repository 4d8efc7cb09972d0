"""The Kafka transport against a real broker: delivery, fan-out per service, DLQ and study.failed."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer

from shared.bus import KafkaBus
from shared.events import StudyCompleted, StudyFailed, StudyPreprocessed, follow_up, producer
from shared.settings import Settings


def completed(study_uid: str) -> StudyCompleted:
    return StudyCompleted(study_uid=study_uid, hospital_id="H", correlation_id="c", producer=producer("ingest"), reason="all_views", views=[])


async def wait_until(condition, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    records: list[tuple[bytes, dict]] = []
    try:
        for _ in range(30):
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records += [(r.key, json.loads(r.value)) for r in batch]
            if len(records) >= expected:
                break
    finally:
        await consumer.stop()
    return records


async def test_kafka_bus_delivers_results_and_dead_letters_poison(kafka, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    prefix = f"it{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update=dict(transport="kafka", kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, retry_backoff_seconds=0.01))
    bus = KafkaBus(settings, client_id="it")
    preprocessed: list[StudyPreprocessed] = []
    failures: list[StudyFailed] = []

    async def preprocess(event: StudyCompleted) -> StudyPreprocessed:
        if event.study_uid == "poison":
            raise ValueError("imagen ilegible")
        return follow_up(event, StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])  # type: ignore[return-value]

    async def infer(event: StudyPreprocessed) -> None:
        preprocessed.append(event)

    async def status(event: StudyFailed) -> None:
        failures.append(event)

    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    bus.subscribe(StudyPreprocessed, infer, service="infer")
    bus.subscribe(StudyFailed, status, service="status_api")
    await bus.start()
    try:
        await bus.publish(completed("poison"))
        await bus.publish(completed("1.2.3"))
        await wait_until(lambda: preprocessed and failures)
    finally:
        await bus.stop()

    assert [e.study_uid for e in preprocessed] == ["1.2.3"]  # the consumer kept serving after the poison
    assert failures[0].study_uid == "poison" and "imagen ilegible" in failures[0].reason
    dead = await read_topic(kafka.bootstrap, f"{prefix}dlq", 1)
    assert len(dead) == 1 and dead[0][0] == b"poison"
    assert dead[0][1]["stage"] == "preprocess" and dead[0][1]["attempts"] == settings.max_delivery_attempts
    assert json.loads(dead[0][1]["payload"])["study_uid"] == "poison"
    keys = {key for key, _ in await read_topic(kafka.bootstrap, f"{prefix}study.preprocessed", 1)}
    assert keys == {b"1.2.3"}


async def test_results_the_broker_refuses_for_a_while_are_published_once_it_accepts_without_redoing_the_work(
    kafka, settings: Settings  # type: ignore[no-untyped-def]
) -> None:
    """The handler's results are kept in the ledger and published as soon as the broker takes them;
    the offset is committed only after that (at least once), and the work is not done twice."""
    prefix = f"it{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update=dict(transport="kafka", kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix))
    bus = KafkaBus(settings)
    calls: list[str] = []
    refused: list[str] = []
    real_send = bus._send

    async def flaky_send(topic: str, key: str, payload: bytes) -> None:
        if topic.endswith("study.preprocessed") and not refused:
            refused.append(topic)
            raise ConnectionError("broker refused the write")
        await real_send(topic, key, payload)

    async def preprocess(event: StudyCompleted) -> StudyPreprocessed:
        calls.append(event.study_uid)
        return follow_up(event, StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])  # type: ignore[return-value]

    bus._send = flaky_send  # type: ignore[method-assign]
    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    await bus.start()
    try:
        await bus.publish(completed("9.9"))
        outputs = await read_topic(kafka.bootstrap, f"{prefix}study.preprocessed", 1)
    finally:
        await bus.stop()
    assert calls == ["9.9"] and refused
    assert [key for key, _ in outputs] == [b"9.9"]


async def test_kafka_batch_subscriber_takes_many_at_once_and_isolates_a_poison_event(kafka, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    prefix = f"it{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update=dict(transport="kafka", kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, retry_backoff_seconds=0.01))
    publisher = KafkaBus(settings, client_id="it-pub")
    await publisher.start()
    try:
        uids = [f"1.{n}" for n in range(60)] + ["poison"]
        for uid in uids:  # all waiting on the topic before the consumer starts
            await publisher.publish(completed(uid))
        await publisher.publish(
            follow_up(completed("2.0"), StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])
        )
    finally:
        await publisher.stop()

    bus = KafkaBus(settings, client_id="it")
    sizes: list[int] = []
    handled: list[str] = []

    async def project(events: list[StudyCompleted | StudyPreprocessed]) -> None:
        sizes.append(len(events))
        if any(e.study_uid == "poison" for e in events):
            raise ValueError("evento venenoso")
        handled.extend(e.study_uid for e in events)

    bus.subscribe_batch((StudyCompleted, StudyPreprocessed), project, service="status_api", max_records=50)
    await bus.start()
    try:
        await wait_until(lambda: len(handled) == 61)
    finally:
        await bus.stop()
    assert sorted(handled) == sorted([*uids[:-1], "2.0"]) and max(sizes) > 1  # both topics, one consumer group
    dead = await read_topic(kafka.bootstrap, f"{prefix}dlq", 1)
    assert [key for key, _ in dead] == [b"poison"] and dead[0][1]["source_topic"] == f"{prefix}study.completed"

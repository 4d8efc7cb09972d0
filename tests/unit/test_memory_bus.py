"""The in-process bus: handlers' results are published, failures retried then dead-lettered."""

import json

from shared.bus import MemoryBus
from shared.events import StudyCompleted, StudyFailed, StudyPreprocessed, follow_up, producer
from shared.settings import Settings


def completed() -> StudyCompleted:
    return StudyCompleted(
        study_uid="1.9", hospital_id="H", correlation_id="c", producer=producer("ingest"), reason="quiet_period", views=[]
    )


async def test_handler_result_reaches_the_next_subscriber(settings: Settings) -> None:
    bus = MemoryBus(settings)
    received: list[StudyPreprocessed] = []

    async def preprocess(event: StudyCompleted) -> StudyPreprocessed:
        return follow_up(event, StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])  # type: ignore[return-value]

    async def infer(event: StudyPreprocessed) -> None:
        received.append(event)

    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    bus.subscribe(StudyPreprocessed, infer, service="infer")
    await bus.start()
    await bus.publish(completed())
    await bus.drain()
    await bus.stop()
    assert len(received) == 1 and received[0].correlation_id == "c"


async def test_failing_handler_is_retried_then_dead_lettered_and_study_failed(settings: Settings) -> None:
    bus = MemoryBus(settings)
    calls: list[int] = []
    failures: list[StudyFailed] = []

    async def broken(event: StudyCompleted) -> None:
        calls.append(1)
        raise RuntimeError("píxeles corruptos")

    async def watch_failures(event: StudyFailed) -> None:
        failures.append(event)

    bus.subscribe(StudyCompleted, broken, service="preprocess")
    bus.subscribe(StudyFailed, watch_failures, service="status_api")
    await bus.start()
    await bus.publish(completed())
    await bus.drain()
    await bus.publish(completed())  # the consumer keeps serving after a poison message
    await bus.drain()
    await bus.stop()
    assert len(calls) == 2 * settings.max_delivery_attempts
    assert [f.stage for f in failures] == ["preprocess", "preprocess"]
    assert "píxeles corruptos" in failures[0].reason
    dead = [json.loads(payload) for topic, payload in bus.sent if topic == "mdd.dlq"]
    assert len(dead) == 2 and dead[0]["stage"] == "preprocess" and dead[0]["study_uid"] == "1.9"
    assert json.loads(dead[0]["payload"])["event_type"] == "study.completed"


async def test_unreadable_message_goes_to_dead_letter_without_calling_handler(settings: Settings) -> None:
    bus = MemoryBus(settings)
    calls: list[int] = []

    async def handler(event: StudyCompleted) -> None:
        calls.append(1)

    bus.subscribe(StudyCompleted, handler, service="preprocess")
    await bus.start()
    await bus._send("mdd.study.completed", "x", b"{not json")
    await bus.drain()
    await bus.stop()
    assert calls == []
    assert [topic for topic, _ in bus.sent].count("mdd.dlq") == 1


async def test_batch_handler_gets_what_is_queued_and_a_poison_event_is_dead_lettered_alone(settings: Settings) -> None:
    bus = MemoryBus(settings)
    batches: list[list[str]] = []
    handled: list[str] = []

    async def project(events: list[StudyCompleted]) -> None:
        batches.append([e.study_uid for e in events])
        if any(e.study_uid == "1.poison" for e in events):
            raise RuntimeError("evento venenoso")
        handled.extend(e.study_uid for e in events)

    bus.subscribe_batch(StudyCompleted, project, service="status_api", max_records=10)
    await bus.start()
    uids = [f"1.{n}" for n in range(5)] + ["1.poison"] + [f"1.{n}" for n in range(5, 25)]
    for uid in uids:
        await bus.publish(completed().model_copy(update={"study_uid": uid}))
    await bus.publish_to("mdd.study.completed", completed())
    await bus._send("mdd.study.completed", "x", b"{not json")  # what a foreign producer could put on the topic
    await bus.drain()
    await bus.stop()
    assert max(len(batch) for batch in batches) == 10  # up to max_records at once
    assert sorted(handled) == sorted([*[u for u in uids if u != "1.poison"], "1.9"])
    dead = [json.loads(payload) for topic, payload in bus.sent if topic == "mdd.dlq"]
    assert sorted(d["study_uid"] or "" for d in dead) == ["", "1.poison"]  # the unreadable one and the poison, nothing else
    failed = [json.loads(payload) for topic, payload in bus.sent if topic == "mdd.study.failed"]
    assert [f["study_uid"] for f in failed] == ["1.poison"]

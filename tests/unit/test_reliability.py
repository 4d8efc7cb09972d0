"""The reliability mechanisms, each with its failure cases: error classes, backoff, the consumer ledger
under the bus, the outbox and its relay, leader leases, periodic tasks and the durable in-process queues."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
from datetime import timedelta

import pytest
import urllib3
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError, TopicAuthorizationFailedError
from minio.error import S3Error
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from shared.bus import KILLED_REASON, MemoryBus, derived_event_id
from shared.db import init_db, make_engine
from shared.events import StudyCompleted, StudyFailed, StudyPreprocessed, follow_up, producer, utc_now
from shared.reliability.consumed import ConsumerLedger
from shared.reliability.errors import Dependency, DependencyUnavailable, PermanentFailure, unavailable_dependency
from shared.reliability.lease import LeaderLease
from shared.reliability.outbox import Outbox, add_events
from shared.reliability.periodic import PeriodicTask
from shared.reliability.retry import Backoff
from shared.reliability.tables import RELIABILITY_TABLES, DeadLetterRow, OutboxRow
from shared.settings import Settings


def completed(uid: str = "1.9") -> StudyCompleted:
    return StudyCompleted(
        study_uid=uid, hospital_id="H", correlation_id="c", producer=producer("ingest"), reason="quiet_period", views=[]
    )


def _s3(code: str) -> S3Error:
    return S3Error(None, code, "message", "resource", "request", "host")  # type: ignore[arg-type]


def _chained() -> Exception:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise ValueError("no se pudo leer / could not read") from inner
    except ValueError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (DependencyUnavailable(Dependency.PACS, "x"), Dependency.PACS),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), Dependency.DATABASE),
        (sqlite3.OperationalError("database is locked"), Dependency.DATABASE),
        (urllib3.exceptions.MaxRetryError(None, "/dicom/x", "refused"), Dependency.STORE),  # type: ignore[arg-type]
        (_s3("XMinioServerNotInitialized"), Dependency.STORE),
        (KafkaConnectionError("Unable to bootstrap"), Dependency.BROKER),
        (NotLeaderForPartitionError(), Dependency.BROKER),
        (smtplib.SMTPServerDisconnected("gone"), Dependency.SMTP),
        (smtplib.SMTPResponseException(451, b"try later"), Dependency.SMTP),
        (TimeoutError("timed out"), Dependency.NETWORK),
        (_chained(), Dependency.NETWORK),  # an adapter's error raised from a connection error is still transient
        (ValueError("píxeles corruptos"), None),
        (IntegrityError("INSERT", {}, Exception("duplicate")), None),
        (_s3("NoSuchKey"), None),
        (TopicAuthorizationFailedError(), None),
        (smtplib.SMTPResponseException(550, b"no such user"), None),
        (PermanentFailure("no es una mastografía"), None),
    ],
)
def test_errors_are_classified_transient_or_deterministic(exc: BaseException, dependency: Dependency | None) -> None:
    assert unavailable_dependency(exc) is dependency


def test_a_permanent_failure_wins_over_a_transient_cause() -> None:
    try:
        raise PermanentFailure("entrada inválida") from ConnectionResetError()
    except PermanentFailure as exc:
        assert unavailable_dependency(exc) is None


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.5, factor=2, cap=15, jitter=0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6, 20)] == [0.5, 1, 2, 4, 8, 15, 15]
    jittered = Backoff(initial=1, factor=2, cap=10, jitter=0.1)
    assert all(0.9 <= jittered.delay(1) <= 1.1 for _ in range(50))


async def test_a_dependency_that_is_down_spends_no_attempt_however_long_it_lasts(settings: Settings) -> None:
    bus = MemoryBus(settings)
    calls: list[int] = []
    out: list[StudyPreprocessed] = []

    async def preprocess(event: StudyCompleted) -> StudyPreprocessed:
        calls.append(1)
        if len(calls) <= 2 * settings.max_delivery_attempts:
            raise DependencyUnavailable(Dependency.STORE, "MinIO no responde")
        return follow_up(event, StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])  # type: ignore[return-value]

    async def infer(event: StudyPreprocessed) -> None:
        out.append(event)

    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    bus.subscribe(StudyPreprocessed, infer, service="infer")
    await bus.start()
    await bus.publish(completed())
    await bus.drain()
    await bus.stop()
    assert len(calls) == 2 * settings.max_delivery_attempts + 1 and len(out) == 1
    assert [topic for topic, _ in bus.sent if topic in ("mdd.dlq", "mdd.study.failed")] == []


async def test_a_message_that_keeps_killing_its_consumer_is_dead_lettered_without_running_again(settings: Settings) -> None:
    event = completed()
    ledger = ConsumerLedger(make_engine(settings.resolved_database_url))
    init_db(ledger.engine, RELIABILITY_TABLES)
    for _ in range(settings.max_interrupted_attempts):  # each attempt began, then the process died (as under the OOM killer)
        ledger.begin("preprocess", str(event.event_id), event.study_uid)
    bus = MemoryBus(settings)
    calls: list[int] = []

    async def preprocess(_: StudyCompleted) -> None:
        calls.append(1)

    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    await bus.start()
    await bus.publish(event)  # the broker redelivers it to the restarted service
    await bus.drain()
    await bus.stop()
    assert calls == []
    [dead] = [json.loads(p) for t, p in bus.sent if t == "mdd.dlq"]
    assert dead["error"] == KILLED_REASON.format(n=settings.max_interrupted_attempts)
    assert dead["attempts"] == settings.max_interrupted_attempts
    [failed] = [json.loads(p) for t, p in bus.sent if t == "mdd.study.failed"]
    assert failed["stage"] == "preprocess" and "memoria" in failed["reason"]
    with Session(bus.engine) as session:
        [row] = session.exec(select(DeadLetterRow)).all()
        assert (row.consumer, row.status, row.event_id) == ("preprocess", "open", str(event.event_id))


async def test_a_redelivered_message_publishes_the_same_results_again_without_redoing_the_work(settings: Settings) -> None:
    bus = MemoryBus(settings)
    calls: list[int] = []

    async def preprocess(event: StudyCompleted) -> StudyPreprocessed:
        calls.append(1)
        return follow_up(event, StudyPreprocessed, "preprocess", segmentation_backend="classic", views=[])  # type: ignore[return-value]

    bus.subscribe(StudyCompleted, preprocess, service="preprocess")
    await bus.start()
    event = completed()
    await bus.publish(event)
    await bus.drain()
    await bus.publish(event)  # redelivered
    await bus.drain()
    await bus.stop()
    results = [json.loads(p) for t, p in bus.sent if t == "mdd.study.preprocessed"]
    assert calls == [1] and len(results) == 2 and results[0] == results[1]
    assert results[0]["event_id"] == str(derived_event_id("preprocess", str(event.event_id), 0))


async def test_the_in_process_queues_survive_the_process(settings: Settings) -> None:
    first = MemoryBus(settings)
    started = asyncio.Event()

    async def stuck(_: StudyCompleted) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes: the process dies meanwhile

    first.subscribe(StudyCompleted, stuck, service="preprocess")
    await first.start()
    await first.publish(completed("1.1"))
    await first.publish(completed("1.2"))
    await started.wait()
    await first.stop()  # cancelled mid-handling: nothing was acknowledged

    second = MemoryBus(settings)
    handled: list[str] = []

    async def preprocess(event: StudyCompleted) -> None:
        handled.append(event.study_uid)

    second.subscribe(StudyCompleted, preprocess, service="preprocess")
    await second.start()
    await second.drain()
    await second.stop()
    assert handled == ["1.1", "1.2"]


async def test_two_processes_may_not_share_one_in_process_queue(settings: Settings) -> None:
    from shared.errors import ConfigurationError

    first, second = MemoryBus(settings), MemoryBus(settings)
    await first.start()
    try:
        with pytest.raises(ConfigurationError, match="data folder"):
            await second.start()
    finally:
        await first.stop()


class _Recorder:
    """A publisher that records what it is given, and can refuse."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.refuse = False

    async def publish_raw(self, topic: str, key: str, payload: bytes) -> None:
        if self.refuse:
            raise DependencyUnavailable(Dependency.BROKER, "broker caído")
        self.sent.append((topic, key, payload))

    def publish_raw_from_thread(self, topic: str, key: str, payload: bytes, timeout: float) -> None:
        if self.refuse:
            raise DependencyUnavailable(Dependency.BROKER, "broker caído")
        self.sent.append((topic, key, payload))


async def test_the_relay_leaves_a_slow_flush_its_rows_and_nothing_goes_out_twice(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    publisher = _Recorder()
    outbox = Outbox(engine, publisher, "mdd.")
    with Session(engine) as session:
        ids = add_events(session, [completed("2.1")])
        session.commit()
    with Session(engine) as session:  # the flush is so slow that its grace runs out while it publishes
        for row in session.exec(select(OutboxRow)).all():
            row.relay_after = utc_now() - timedelta(seconds=1)
            session.add(row)
        session.commit()
    relayed: list[int] = []
    original = publisher.publish_raw

    async def slow_publish(topic: str, key: str, payload: bytes) -> None:
        relayed.append(await outbox.relay_once())  # the relay runs while the broker has not answered yet
        await original(topic, key, payload)

    publisher.publish_raw = slow_publish  # type: ignore[method-assign]
    await outbox.flush(ids)
    outbox.mark_now()
    assert relayed == [0] and len(publisher.sent) == 1
    assert await outbox.relay_once() == 0 and outbox.unpublished() == 0


async def test_the_outbox_flushes_what_its_writer_committed_and_the_relay_what_a_failed_flush_left(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    publisher = _Recorder()
    outbox = Outbox(engine, publisher, "mdd.")
    with Session(engine) as session:
        ids = add_events(session, [completed("1.1"), completed("1.2")])
        add_events(session, [completed("1.1").model_copy(update={"event_id": completed("x").event_id})])
        session.commit()
    publisher.refuse = True
    with pytest.raises(DependencyUnavailable):
        await outbox.flush(ids)
    assert outbox.unpublished() == 3 and await outbox.relay_once() == 0  # the writer's flush still has its grace
    publisher.refuse = False
    with Session(engine) as session:  # the grace is over
        for row in session.exec(select(OutboxRow)).all():
            row.relay_after = utc_now() - timedelta(seconds=1)
            session.add(row)
        session.commit()
    assert await outbox.relay_once() == 3 and outbox.unpublished() == 0
    assert [key for _, key, _ in publisher.sent] == ["1.1", "1.2", "1.1"]  # in the order they were written
    await outbox.flush(ids)  # published already: nothing goes out twice
    assert len(publisher.sent) == 3
    assert outbox.prune(timedelta(0), now=utc_now() + timedelta(seconds=1)) == 3


def test_what_the_scp_flushed_is_marked_before_it_answers_so_a_restart_does_not_publish_it_again(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    outbox = Outbox(engine, _Recorder(), "mdd.")
    with Session(engine) as session:
        ids = add_events(session, [completed("1.8"), completed("1.9")])
        session.commit()
    outbox.flush_from_thread(ids, timeout=5)
    # kill -9 here, right after the C-STORE answer: the next process finds nothing left to relay
    restarted = Outbox(engine, publisher := _Recorder(), "mdd.")
    assert outbox.unpublished() == 0
    assert asyncio.run(restarted.relay_once()) == 0 and publisher.sent == []


async def test_the_relay_publishes_at_once_what_a_previous_process_left_behind(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    with Session(engine) as session:  # written, committed, then the writer died before flushing
        add_events(session, [completed("1.7")])
        session.commit()
    restarted = Outbox(engine, publisher := _Recorder(), "mdd.")
    assert await restarted.relay_once() == 1 and publisher.sent[0][0] == "mdd.study.completed"


def test_a_lease_has_one_holder_until_it_expires_or_is_released(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    first = LeaderLease(engine, "scan", ttl_seconds=60, owner="a")
    second = LeaderLease(engine, "scan", ttl_seconds=60, owner="b")
    assert first.acquire() and first.acquire()  # renewing
    assert not second.acquire()
    first.release()
    assert second.acquire() and not first.acquire()
    short = LeaderLease(engine, "other", ttl_seconds=0.001, owner="c")
    assert short.acquire()
    import time

    time.sleep(0.01)  # the holder stopped renewing (it died)
    assert LeaderLease(engine, "other", ttl_seconds=60, owner="d").acquire()


async def test_a_periodic_task_survives_its_errors_and_runs_only_on_the_lease_holder(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, RELIABILITY_TABLES)
    rounds: list[str] = []

    async def flaky() -> None:
        rounds.append("x")
        if len(rounds) == 1:
            raise RuntimeError("falla una vez")

    leader = PeriodicTask("scan", flaky, 0.01, lease=LeaderLease(engine, "scan", 60, owner="a"))
    follower = PeriodicTask("scan", flaky, 0.01, lease=LeaderLease(engine, "scan", 60, owner="b"))
    assert await leader.run_once() is False  # the error is logged; the loop goes on
    assert await leader.run_once() is True and await follower.run_once() is False
    await leader.start()
    while len(rounds) < 5:
        await asyncio.sleep(0.01)
    await leader.stop()  # releases the lease
    assert await follower.run_once() is True


async def test_a_study_failed_event_that_fails_is_dead_lettered_without_another_study_failed(settings: Settings) -> None:
    bus = MemoryBus(settings)

    async def broken(_: StudyFailed) -> None:
        raise ValueError("no")

    bus.subscribe(StudyFailed, broken, service="notify", group="notify-failures")
    await bus.start()
    await bus.publish(follow_up(completed(), StudyFailed, "preprocess", stage="preprocess", reason="x"))
    await bus.drain()
    await bus.stop()
    assert len([t for t, _ in bus.sent if t == "mdd.dlq"]) == 1
    assert len([t for t, _ in bus.sent if t == "mdd.study.failed"]) == 1  # only the one published above


async def test_with_attempts_retries_refusals_and_lets_an_outage_through_at_once() -> None:
    from shared.reliability.retry import AttemptsSpent, with_attempts

    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise ValueError("0xA900")

    with pytest.raises(AttemptsSpent) as spent:
        await with_attempts(refused, 3, 0.0, "prueba")
    assert len(calls) == 3 and spent.value.attempts == 3 and isinstance(spent.value.last, ValueError)

    async def down() -> None:
        calls.append(2)
        raise DependencyUnavailable(Dependency.PACS, "sin asociación")

    with pytest.raises(DependencyUnavailable):
        await with_attempts(down, 3, 0.0, "prueba")
    assert calls.count(2) == 1  # not spent: the caller waits for the PACS


def test_an_inference_server_that_cannot_be_reached_is_a_dependency_down() -> None:
    from services.infer.backends import BackendUnavailable

    assert unavailable_dependency(BackendUnavailable("Triton no responde")) is Dependency.TRITON

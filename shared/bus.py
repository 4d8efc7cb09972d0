"""Broker wiring: the same handler code runs on Kafka (FastStream) and in process.

A handler is a plain ``async def`` over one event model that returns the events it produces
(one, several or none). The bus decodes, runs the handler under the consumer ledger
(:mod:`shared.reliability.consumed`), publishes the results keyed by study UID, and keeps consuming:

- a failure because a dependency is down pauses the message and retries it with capped backoff
  until the dependency is back; no attempt is spent and nothing is dead-lettered;
- a deterministic failure is retried up to ``MDD_MAX_DELIVERY_ATTEMPTS`` times, then the message
  goes to the dead-letter topic with a ``study.failed`` event, both through the outbox; so does a
  message whose consumer died while handling it ``MDD_MAX_INTERRUPTED_ATTEMPTS`` times (counted in
  the database before each attempt: out of memory, a crash loop);
- events a handler produces get ids derived from (consumer group, input event, position), and are
  kept in the ledger: a redelivered message publishes the same events again instead of redoing
  the work, and every consumer drops what it has seen.

Both transports are durable: Kafka commits a message only after it was handled, and the in-process
transport of the embedded mode keeps its queues in an SQLite file of the data folder, so a
``kill -9`` of ``mdd up`` loses nothing that was published.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared.events import EVENT_TYPES, DeadLetter, Event, StudyFailed, follow_up, parse_event
from shared.kafka_security import aiokafka_options, faststream_security
from shared.logs import bind_study
from shared.reliability.consumed import DONE, Attempt, ConsumerLedger
from shared.reliability.crashpoints import crash_point
from shared.reliability.errors import DependencyUnavailable, Dependency, describe, unavailable_dependency
from shared.reliability.health import HEALTH
from shared.reliability.deadletters import record_dead_letter
from shared.reliability.outbox import Outbox, add_events
from shared.reliability.periodic import PeriodicTask
from shared.reliability.retry import configure_dependency_backoff, dependency_backoff, note_outage, note_recovery, until_available
from shared.settings import Settings
from shared.topics import dead_letter_topic, topic_for

log = logging.getLogger("mdd.bus")

E = TypeVar("E", bound=Event)
HandlerResult = Event | Sequence[Event] | None
Handler = Callable[[Any], Awaitable[HandlerResult]]
OUTBOX_RELAY_SECONDS = 1.0
KILLED_REASON = (
    "El mensaje interrumpió a su consumidor {n} veces (¿memoria agotada?) / the message stopped its consumer "
    "{n} times (out of memory?)"
)


@dataclass(frozen=True)
class Subscription:
    """One consumer group's handler for one event type.

    With ``batch`` > 1 the handler takes a list of up to ``batch`` events (see ``subscribe_batch``),
    which may also come from the topics of ``more_classes``.
    """

    event_cls: type[Event]
    group: str
    handler: Handler
    service: str
    concurrency: int = 1
    batch: int = 1
    more_classes: tuple[type[Event], ...] = ()

    @property
    def event_classes(self) -> tuple[type[Event], ...]:
        """Every event type this subscription consumes."""
        return (self.event_cls, *self.more_classes)


def derived_event_id(consumer: str, cause_event_id: str, position: int) -> UUID:
    """The id of the ``position``-th event a consumer group produced from one input event."""
    return uuid5(NAMESPACE_URL, f"mdd-derived:{consumer}:{cause_event_id}:{position}")


def _as_list(result: HandlerResult) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    return list(result)


class Bus(ABC):
    """Publish events and run subscribed handlers, at least once, with the ledger, the outbox and a DLQ."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        from shared.db import make_engine

        self.settings = settings
        configure_dependency_backoff(settings.dependency_retry_max_seconds)
        self.subscriptions: list[Subscription] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine = engine if engine is not None else make_engine(settings.resolved_database_url, settings.database_pool_size)
        self.ledger = ConsumerLedger(self.engine)
        self.outbox = Outbox(self.engine, self, settings.topic_prefix)
        self._relay: PeriodicTask | None = None

    def subscribe(
        self,
        event_cls: type[E],
        handler: Callable[[E], Awaitable[HandlerResult]],
        *,
        service: str,
        group: str | None = None,
        concurrency: int = 1,
    ) -> None:
        """Register ``handler`` for ``event_cls`` in consumer group ``group`` (default: the service).

        ``concurrency`` > 1 handles that many messages at once (order between them is not kept).
        """
        self.subscriptions.append(Subscription(event_cls, group or service, handler, service, concurrency))

    def subscribe_batch(
        self,
        event_classes: type[E] | Sequence[type[Event]],
        handler: Callable[[list[Any]], Awaitable[HandlerResult]],
        *,
        service: str,
        group: str | None = None,
        max_records: int = 200,
    ) -> None:
        """Register a handler that takes the events available at once, up to ``max_records``, from
        the topics of one or several event types (one consumer group for all of them).

        For consumers whose work is cheaper in bulk and idempotent by itself (one database
        transaction for many events, de-duplicated on the event id). A batch that fails because a
        dependency is down is retried whole until it is back; a batch that fails otherwise is handled
        again one event at a time, each under the ledger, so one poison event goes to the dead-letter
        topic alone.
        """
        classes = (event_classes,) if isinstance(event_classes, type) else tuple(event_classes)
        self.subscriptions.append(
            Subscription(classes[0], group or service, handler, service, 1, max(1, max_records), classes[1:])
        )

    def topic(self, event: Event | type[Event]) -> str:
        """Topic name of an event (instance or class)."""
        return topic_for(event.event_type if isinstance(event, Event) else event, self.settings.topic_prefix)

    # --- publishing

    async def publish(self, event: Event) -> None:
        """Publish an event durably (returns once the broker has accepted it)."""
        await self._send(self.topic(event), event.study_uid, event.model_dump_json().encode())

    async def publish_to(self, topic: str, event: Event) -> None:
        """Publish an event to an explicit topic (e.g. a provider's own), keyed by its study UID."""
        await self._send(topic, event.study_uid, event.model_dump_json().encode())

    async def publish_raw(self, topic: str, key: str, payload: bytes) -> None:
        """Publish an encoded message as it is (the outbox relays rows this way)."""
        await self._send(topic, key, payload)

    def publish_from_thread(self, event: Event, timeout: float) -> None:
        """Publish from a non-async thread (e.g. the DICOM SCP) and wait for the broker."""
        self.publish_raw_from_thread(self.topic(event), event.study_uid, event.model_dump_json().encode(), timeout)

    def publish_raw_from_thread(self, topic: str, key: str, payload: bytes, timeout: float) -> None:
        """``publish_raw`` from a non-async thread; raises ``DependencyUnavailable`` when not accepted in time."""
        if self.loop is None:
            raise RuntimeError("El bus no está iniciado / bus not started")
        future = asyncio.run_coroutine_threadsafe(self._send(topic, key, payload), self.loop)
        try:
            future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise DependencyUnavailable(Dependency.BROKER, f"El broker no confirmó en {timeout:.0f} s / no broker ack") from exc

    async def dead_letter(self, letter: DeadLetter, study_failed: Event | None = None, consumer_event: tuple[str, str] | None = None) -> None:
        """Dead-letter a message: kept for the operators (``mdd dlq``) and sent to the dead-letter topic.

        With ``study_failed`` the study's failure is announced in the same transaction; with
        ``consumer_event`` (group, event id) that consumer's ledger entry is closed as dead in it too.
        """

        def record() -> list[str]:
            with Session(self.engine) as session:
                ids = record_dead_letter(session, letter, self.settings.topic_prefix)
                if study_failed is not None:
                    ids += add_events(session, [study_failed])
                if consumer_event is not None:
                    self.ledger.dead(*consumer_event, letter.error, session=session)
                session.commit()
                return ids

        ids = await until_available(lambda: asyncio.to_thread(record), "dead-letter")
        await until_available(lambda: self.outbox.flush(ids), "dead-letter")

    # --- consuming

    async def deliver(self, subscription: Subscription, raw: bytes, source_topic: str) -> None:
        """Decode one message, run its handler under the ledger, publish its results or dead-letter it.

        Returns only once the message is settled (handled, or dead-lettered); waits while a dependency is down.
        """
        event = await self._decode(subscription, raw, source_topic)
        if event is not None:
            await self._handle(subscription, event, raw, source_topic, subscription.handler)

    async def deliver_batch(self, subscription: Subscription, messages: Sequence[tuple[bytes, str]]) -> None:
        """Decode (body, topic) messages and run a batch handler on them; on a deterministic failure, one at a time."""
        decoded = [(await self._decode(subscription, raw, topic), raw, topic) for raw, topic in messages]
        batch = [(event, raw, topic) for event, raw, topic in decoded if event is not None]
        if not batch:
            return
        retry = 0
        while True:
            try:
                result = await subscription.handler([event for event, _, _ in batch])
                break
            except Exception as exc:
                dependency = unavailable_dependency(exc)
                if dependency is None:
                    log.warning("Lote de %d en %s falló; uno por uno / batch failed, one at a time: %r", len(batch), subscription.group, exc)
                    for event, raw, topic in batch:
                        await self._handle(subscription, event, raw, topic, lambda one: subscription.handler([one]))
                    return
                note_outage(HEALTH, dependency, subscription.group, exc)
                retry += 1
                await asyncio.sleep(dependency_backoff().delay(retry))
        if retry:
            note_recovery(HEALTH, dependency, subscription.group)
        for produced in _as_list(result):
            await until_available(lambda produced=produced: self.publish(produced), subscription.group)

    async def _decode(self, subscription: Subscription, raw: bytes, source_topic: str) -> Event | None:
        """The event in a message; ``None`` (after dead-lettering it) when it cannot be read."""
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            log.error("Mensaje ilegible enviado a DLQ / unreadable message dead-lettered: %s", exc)
            await self.dead_letter(
                DeadLetter(stage=subscription.group, source_topic=source_topic, error=str(exc), attempts=1, payload=raw.decode("utf-8", "replace"))
            )
            return None
        if not isinstance(event, subscription.event_classes):
            log.warning("Evento %s ignorado en %s", event.event_type, source_topic)
            return None
        return event

    def _with_derived_ids(self, consumer: str, cause: Event, produced: list[Event]) -> list[Event]:
        """Events without an id of their own get one derived from the consumer and the input event."""
        return [
            event if "event_id" in event.model_fields_set
            else event.model_copy(update={"event_id": derived_event_id(consumer, str(cause.event_id), position)})
            for position, event in enumerate(produced)
        ]

    async def _publish_all(self, events: list[Event], what: str) -> None:
        for event in events:
            await until_available(lambda event=event: self.publish(event), what)

    async def _handle(
        self, subscription: Subscription, event: Event, raw: bytes, source_topic: str, call: Callable[[Any], Awaitable[HandlerResult]]
    ) -> None:
        """Run ``call(event)`` under the ledger: wait out outages, count deterministic failures, give up at the limit."""
        consumer, event_id = subscription.group, str(event.event_id)
        limit, interrupted_limit = self.settings.max_delivery_attempts, self.settings.max_interrupted_attempts
        waits = 0
        waited_on: Dependency | None = None
        with bind_study(event.study_uid, event.correlation_id):
            while True:
                attempt: Attempt = await until_available(
                    lambda: asyncio.to_thread(self.ledger.begin, consumer, event_id, event.study_uid, event.hospital_id), consumer
                )
                if attempt.finished:
                    if attempt.status == DONE:
                        log.info("Evento ya procesado por %s: se publican sus resultados / already handled, re-publishing", consumer)
                        await self._publish_all([parse_event(_json(item)) for item in attempt.outputs or []], consumer)
                    return
                if attempt.interruptions >= interrupted_limit:
                    reason = KILLED_REASON.format(n=attempt.interruptions)
                    await self._give_up(subscription, event, raw, source_topic, reason, attempt.attempts - 1)
                    return
                try:
                    result = await call(event)
                except Exception as exc:
                    dependency = unavailable_dependency(exc)
                    if dependency is not None:
                        note_outage(HEALTH, dependency, consumer, exc)
                        waited_on = dependency
                        why = describe(exc)
                        await until_available(lambda: asyncio.to_thread(self.ledger.give_back, consumer, event_id, why), consumer)
                        waits += 1
                        await asyncio.sleep(dependency_backoff().delay(waits))
                        continue
                    reason = describe(exc)
                    failures = attempt.failures + 1
                    log.warning("Intento %d/%d de %s falló / attempt failed: %s", failures, limit, consumer, reason,
                                exc_info=failures >= limit)
                    if failures >= limit:
                        await self._give_up(subscription, event, raw, source_topic, reason, failures)
                        return
                    await until_available(lambda: asyncio.to_thread(self.ledger.fail, consumer, event_id, reason), consumer)
                    await asyncio.sleep(self.settings.retry_backoff_seconds * 2 ** (failures - 1))
                    continue
                if waited_on is not None:
                    note_recovery(HEALTH, waited_on, consumer)
                produced = self._with_derived_ids(consumer, event, _as_list(result))
                crash_point("bus.handled")
                outputs = [item.model_dump(mode="json") for item in produced]
                await until_available(lambda: asyncio.to_thread(self.ledger.done, consumer, event_id, outputs), consumer)
                crash_point("bus.recorded")
                await self._publish_all(produced, consumer)
                return

    async def _give_up(self, subscription: Subscription, event: Event, raw: bytes, source_topic: str, reason: str, attempts: int) -> None:
        log.error("Mensaje enviado a DLQ tras %d intentos / dead-lettered after %d attempts: %s", attempts, attempts, reason)
        failed = None
        if not isinstance(event, StudyFailed):
            failed = follow_up(event, StudyFailed, subscription.service, stage=subscription.group, reason=reason)
            failed = failed.model_copy(update={"event_id": derived_event_id(f"{subscription.group}:failed", str(event.event_id), 0)})
        await self.dead_letter(
            DeadLetter(
                stage=subscription.group, source_topic=source_topic, error=reason, attempts=attempts,
                study_uid=event.study_uid, hospital_id=event.hospital_id, payload=raw.decode("utf-8", "replace"),
            ),
            study_failed=failed,
            consumer_event=(subscription.group, str(event.event_id)),
        )

    # --- lifecycle

    async def start(self) -> None:
        """Create the reliability tables, connect, start consuming and relaying the outbox."""
        from shared.db import init_db
        from shared.reliability.tables import RELIABILITY_TABLES

        self.loop = asyncio.get_running_loop()
        await until_available(lambda: asyncio.to_thread(init_db, self.engine, RELIABILITY_TABLES), "database schema")
        await self._start()
        self._relay = PeriodicTask("outbox-relay", self.outbox.relay_once, OUTBOX_RELAY_SECONDS)
        await self._relay.start()

    async def stop(self) -> None:
        """Stop relaying and consuming, and disconnect."""
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        try:
            await asyncio.to_thread(self.outbox.mark_now)
        except Exception as exc:  # the database is away: the next relay publishes those rows again, as the same events
            log.warning("Marcas de publicación no escritas / publication marks not written: %r", exc)
        await self._stop()

    @abstractmethod
    async def _start(self) -> None: ...

    @abstractmethod
    async def _stop(self) -> None: ...

    @abstractmethod
    async def _send(self, topic: str, key: str, payload: bytes) -> None: ...


def _json(item: dict) -> str:
    import json

    return json.dumps(item)


class _DurableQueue:
    """The embedded transport's queues: one SQLite file, one row per (consumer group, message).

    A message is deleted only once its group has handled it; rows claimed by a process that died are
    claimable again when the next one opens the file (one process at a time: a lock file says so).
    """

    def __init__(self, path: Path) -> None:
        from filelock import FileLock, Timeout

        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(f"{path}.lock")
        try:
            self._file_lock.acquire(timeout=0)
        except Timeout as exc:
            from shared.errors import ConfigurationError

            raise ConfigurationError(
                f"Otro proceso usa la carpeta de datos {path.parent.name!r} / another process uses this data folder"
            ) from exc
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS bus_message (id INTEGER PRIMARY KEY AUTOINCREMENT, consumer TEXT NOT NULL, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, claimed INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS bus_message_due ON bus_message (consumer, claimed, id)")
        self._db.execute("UPDATE bus_message SET claimed = 0 WHERE claimed = 1")

    def put(self, consumers: list[str], topic: str, payload: bytes) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO bus_message (consumer, topic, payload) VALUES (?, ?, ?)", [(c, topic, payload) for c in consumers]
            )
            self._db.execute("COMMIT")

    def claim(self, consumer: str, limit: int) -> list[tuple[int, bytes, str]]:
        with self._lock:
            rows = self._db.execute(
                "UPDATE bus_message SET claimed = 1 WHERE id IN (SELECT id FROM bus_message WHERE consumer = ? AND claimed = 0 "
                "ORDER BY id LIMIT ?) RETURNING id, payload, topic",
                (consumer, limit),
            ).fetchall()
        return sorted((int(i), bytes(p), str(t)) for i, p, t in rows)

    def ack(self, ids: list[int]) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM bus_message WHERE id IN ({','.join('?' * len(ids))})", ids)

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM bus_message").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._file_lock.release()


class MemoryBus(Bus):
    """In-process transport for the embedded mode: durable queues in ``DATA_DIR/bus.sqlite3``, one
    worker per subscription (or ``concurrency`` of them), woken when something is published."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        super().__init__(settings, engine)
        self._consumers: dict[str, list[str]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._queue: _DurableQueue | None = None
        self._in_flight = 0
        self.sent: list[tuple[str, bytes]] = []

    @property
    def queue_path(self) -> Path:
        """Where the queues live."""
        return self.settings.data_dir / "bus.sqlite3"

    async def _start(self) -> None:
        self._queue = _DurableQueue(self.queue_path)
        for subscription in self.subscriptions:
            self._wake[subscription.group] = asyncio.Event()
            for event_cls in subscription.event_classes:
                self._consumers.setdefault(self.topic(event_cls), []).append(subscription.group)
            for _ in range(subscription.concurrency):
                self._workers.append(asyncio.create_task(self._work(subscription)))

    async def _work(self, subscription: Subscription) -> None:
        queue, wake = self._queue, self._wake[subscription.group]
        assert queue is not None
        while True:
            claimed = await asyncio.to_thread(queue.claim, subscription.group, subscription.batch)
            if not claimed:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            self._in_flight += 1
            try:
                messages = [(payload, topic) for _, payload, topic in claimed]
                while True:
                    try:
                        if subscription.batch > 1:
                            await self.deliver_batch(subscription, messages)
                        else:
                            await self.deliver(subscription, *messages[0])
                        break
                    except Exception:
                        log.exception("Reintentando entrega / redelivering in %s", subscription.group)
                        await asyncio.sleep(1.0)
                crash_point("bus.delivered")
                await until_available(lambda: asyncio.to_thread(queue.ack, [i for i, _, _ in claimed]), subscription.group)
            finally:
                self._in_flight -= 1

    async def _send(self, topic: str, key: str, payload: bytes) -> None:
        self.sent.append((topic, payload))
        consumers = self._consumers.get(topic, [])
        if self._queue is None or not consumers:
            return
        await asyncio.to_thread(self._queue.put, consumers, topic, payload)
        for consumer in consumers:
            self._wake[consumer].set()

    async def drain(self) -> None:
        """Wait until every queued message has been handled (tests, clean shutdown)."""
        while self._queue is not None and (self._in_flight or await asyncio.to_thread(self._queue.pending)):
            await asyncio.sleep(0.01)

    async def _stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._consumers.clear()
        if self._queue is not None:
            self._queue.close()
            self._queue = None


class KafkaBus(Bus):
    """Apache Kafka: FastStream consumers that commit after handling; an acks=all producer whose
    every send is accepted by the broker or fails within a bounded time (``delivery_timeout_ms``)."""

    #: A handler may wait this long for a dependency before Kafka hands its partitions to another
    #: replica (which then finds the work in the ledger).
    MAX_POLL_INTERVAL_MS = 30 * 60 * 1000

    def __init__(self, settings: Settings, client_id: str = "mdd", engine: Engine | None = None) -> None:
        super().__init__(settings, engine)
        from faststream.kafka import KafkaBroker

        self.client_id = client_id
        self._producer: Any = None
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            consumer_only=True,  # events go out through self._producer
            client_id=client_id,
            security=faststream_security(settings),  # SASL per MDD_KAFKA_SECURITY_PROTOCOL
            logger=logging.getLogger("mdd.kafka"),
            log_level=logging.DEBUG,  # per-message "Received/Processed" lines; our handlers log with study context
        )

    def all_topics(self) -> list[str]:
        """Every internal topic: one per event type plus the dead-letter topic."""
        return [topic_for(name, self.settings.topic_prefix) for name in EVENT_TYPES] + [
            dead_letter_topic(self.settings.topic_prefix)
        ]

    async def ensure_topics(self) -> None:
        """Create the internal topics that do not exist yet (consumers never rely on auto-creation).

        Another service creating the same topics at the same moment is fine: a topic that exists is
        what was wanted. A broker that is not up yet is waited for.
        """
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        async def create() -> None:
            await self._check_credentials()
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, **aiokafka_options(self.settings))
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [topic for topic in self.all_topics() if topic not in existing]
                if missing:
                    await admin.create_topics(
                        [NewTopic(topic, self.settings.kafka_partitions, self.settings.kafka_replication_factor) for topic in missing]
                    )
            except Exception as exc:
                if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                    raise
            finally:
                await admin.close()

        await until_available(create, "kafka topics")

    async def _check_credentials(self) -> None:
        """Fail at once, naming the setting, when the broker refuses our SASL credentials (a broker that is
        down is waited for; wrong credentials never get better by waiting)."""
        if self.settings.kafka_security_protocol == "PLAINTEXT":
            return
        from aiokafka.conn import create_conn
        from aiokafka.errors import IllegalSaslStateError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

        from shared.errors import ConfigurationError

        host, _, port = self.settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
        options = {k: v for k, v in aiokafka_options(self.settings).items() if k != "bootstrap_servers"}
        try:
            connection = await create_conn(host.strip("[]"), int(port), client_id=self.client_id, **options)
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError) as exc:
            raise ConfigurationError(
                f"Kafka rechazó las credenciales SASL (MDD_KAFKA_SASL_USERNAME / MDD_KAFKA_SASL_PASSWORD / "
                f"MDD_KAFKA_SASL_MECHANISM) / Kafka refused the SASL credentials: {exc}"
            ) from exc
        connection.close()

    async def _start(self) -> None:
        from faststream import AckPolicy
        from faststream.kafka.annotations import KafkaMessage

        for subscription in self.subscriptions:
            topics = [self.topic(event_cls) for event_cls in subscription.event_classes]
            topic = topics[0]

            def consumer(subscription: Subscription = subscription, topic: str = topic) -> Callable[[KafkaMessage], Awaitable[None]]:
                async def consume(message: KafkaMessage) -> None:
                    if subscription.batch > 1:  # a batch subscriber's body is the list of bodies, its raw message the records
                        records = message.raw_message if isinstance(message.raw_message, (list, tuple)) else ()
                        sources = [getattr(record, "topic", topic) for record in records] or [topic] * len(message.body)
                        await self.deliver_batch(subscription, list(zip(message.body, sources)))
                    else:
                        source = getattr(message.raw_message, "topic", topic)
                        await self.deliver(subscription, message.body, source)
                    crash_point("bus.delivered")

                return consume

            options: dict[str, Any] = (
                {"batch": True, "max_records": subscription.batch} if subscription.batch > 1 else {"max_workers": subscription.concurrency}
            )
            self.broker.subscriber(
                *topics,
                group_id=f"{self.settings.consumer_group_prefix}.{subscription.group}",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                auto_offset_reset="earliest",
                max_poll_interval_ms=self.MAX_POLL_INTERVAL_MS,
                **options,
            )(consumer())
        await self.ensure_topics()
        await until_available(self._start_producer, "kafka producer")
        await until_available(self.broker.start, "kafka consumers")

    def delivery_timeout_ms(self) -> int:
        """How long one send may take before it fails for good: a third of the publish timeout.

        aiokafka's idempotent producer retries a batch forever, so a publish the SCP already
        answered 0xA700 for would reach the topic once the broker is back, and the modality's
        retry would publish the event a second time. A plain ``acks=all`` producer fails a batch
        once it is ``request_timeout_ms`` old; the wait for topic metadata, a request in flight
        and the batch's age each take at most that long, so three of them fit in the wait.
        """
        return max(500, int(self.settings.publish_timeout_seconds * 1000 / 3))

    async def _start_producer(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=self.client_id,
            acks="all",
            request_timeout_ms=self.delivery_timeout_ms(),
            **aiokafka_options(self.settings),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def _send(self, topic: str, key: str, payload: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("El bus no está iniciado / bus not started")
        try:
            await self._producer.send_and_wait(
                topic, payload, key=key.encode(), headers=[("content-type", b"application/json")]
            )
        except Exception as exc:
            if unavailable_dependency(exc) is not None:
                raise DependencyUnavailable(Dependency.BROKER, f"Broker no disponible / broker unavailable: {describe(exc)}") from exc
            raise

    async def _stop(self) -> None:
        await self.broker.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build_bus(settings: Settings, client_id: str = "mdd", engine: Engine | None = None) -> Bus:
    """The transport chosen by ``MDD_TRANSPORT``."""
    if settings.transport == "kafka":
        return KafkaBus(settings, client_id=client_id, engine=engine)
    return MemoryBus(settings, engine)

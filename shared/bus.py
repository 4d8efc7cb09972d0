"""Broker wiring: the same handler code runs on Kafka (FastStream) and in process.

A handler is a plain ``async def`` over one event model that returns the events it produces
(one, several or none). The bus decodes, retries, publishes the results keyed by study UID, and
sends poison messages to the dead-letter topic with a ``study.failed`` event, then keeps consuming.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.events import EVENT_TYPES, DeadLetter, Event, StudyFailed, follow_up, parse_event
from shared.kafka_security import aiokafka_options, faststream_security
from shared.logs import bind_study
from shared.settings import Settings
from shared.topics import dead_letter_topic, topic_for

log = logging.getLogger("mdd.bus")

E = TypeVar("E", bound=Event)
HandlerResult = Event | Sequence[Event] | None
Handler = Callable[[Any], Awaitable[HandlerResult]]


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


class Bus(ABC):
    """Publish events and run subscribed handlers, at least once, with retries and a DLQ."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscriptions: list[Subscription] = []
        self.loop: asyncio.AbstractEventLoop | None = None

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

        For consumers whose work is cheaper in bulk (one database transaction for many events).
        A batch whose handler fails is handled again one event at a time, each with the usual
        retries, so one poison event goes to the dead-letter topic alone.
        """
        classes = (event_classes,) if isinstance(event_classes, type) else tuple(event_classes)
        self.subscriptions.append(
            Subscription(classes[0], group or service, handler, service, 1, max(1, max_records), classes[1:])
        )

    def topic(self, event: Event | type[Event]) -> str:
        """Topic name of an event (instance or class)."""
        return topic_for(event.event_type if isinstance(event, Event) else event, self.settings.topic_prefix)

    async def publish(self, event: Event) -> None:
        """Publish an event durably (returns once the broker has accepted it)."""
        await self._send(self.topic(event), event.study_uid, event.model_dump_json().encode())

    async def publish_to(self, topic: str, event: Event) -> None:
        """Publish an event to an explicit topic (e.g. a provider's own), keyed by its study UID."""
        await self._send(topic, event.study_uid, event.model_dump_json().encode())

    def publish_from_thread(self, event: Event, timeout: float) -> None:
        """Publish from a non-async thread (e.g. the DICOM SCP) and wait for the broker."""
        if self.loop is None:
            raise RuntimeError("El bus no está iniciado / bus not started")
        asyncio.run_coroutine_threadsafe(self.publish(event), self.loop).result(timeout)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Send a poison message to the dead-letter topic."""
        await self._send(
            dead_letter_topic(self.settings.topic_prefix),
            letter.study_uid or "unknown",
            letter.model_dump_json().encode(),
        )

    async def deliver(self, subscription: Subscription, raw: bytes, source_topic: str) -> None:
        """Decode one message, run its handler with retries, publish results or dead-letter it.

        Raises only when publishing fails, so that the transport redelivers the message.
        """
        event = await self._decode(subscription, raw, source_topic)
        if event is not None:
            await self._handle(subscription, event, raw, source_topic, subscription.handler)

    async def deliver_batch(self, subscription: Subscription, messages: Sequence[tuple[bytes, str]]) -> None:
        """Decode (body, topic) messages and run a batch handler on them; on failure, one at a time.

        Raises only when publishing fails, so that the transport redelivers the messages.
        """
        decoded = [(await self._decode(subscription, raw, topic), raw, topic) for raw, topic in messages]
        batch = [(event, raw, topic) for event, raw, topic in decoded if event is not None]
        if not batch:
            return
        try:
            result = await subscription.handler([event for event, _, _ in batch])
        except Exception as exc:
            log.warning("Lote de %d en %s falló; uno por uno / batch failed, one at a time: %r", len(batch), subscription.group, exc)
            for event, raw, topic in batch:
                await self._handle(subscription, event, raw, topic, lambda one: subscription.handler([one]))
            return
        for produced in _as_list(result):
            await self.publish(produced)

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

    async def _handle(
        self, subscription: Subscription, event: Event, raw: bytes, source_topic: str, call: Callable[[Any], Awaitable[HandlerResult]]
    ) -> None:
        """Run ``call(event)`` with retries; publish what it returns or give the event up."""
        with bind_study(event.study_uid, event.correlation_id):
            attempts = self.settings.max_delivery_attempts
            for attempt in range(1, attempts + 1):
                try:
                    result = await call(event)
                    break
                except Exception as exc:  # the handler's failure must not stop the consumer
                    log.warning("Intento %d/%d de %s falló / attempt failed: %r", attempt, attempts, subscription.group, exc, exc_info=attempt == attempts)
                    if attempt == attempts:
                        await self._give_up(subscription, event, raw, source_topic, exc, attempts)
                        return
                    await asyncio.sleep(self.settings.retry_backoff_seconds * 2 ** (attempt - 1))
            for produced in _as_list(result):
                await self.publish(produced)

    async def _give_up(self, subscription: Subscription, event: Event, raw: bytes, source_topic: str, exc: Exception, attempts: int) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        await self.dead_letter(
            DeadLetter(stage=subscription.group, source_topic=source_topic, error=reason, attempts=attempts, study_uid=event.study_uid, payload=raw.decode("utf-8", "replace"))
        )
        if not isinstance(event, StudyFailed):
            await self.publish(follow_up(event, StudyFailed, subscription.service, stage=subscription.group, reason=reason))

    async def start(self) -> None:
        """Connect and start consuming every subscription."""
        self.loop = asyncio.get_running_loop()
        await self._start()

    @abstractmethod
    async def _start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None:
        """Stop consuming and disconnect."""

    @abstractmethod
    async def _send(self, topic: str, key: str, payload: bytes) -> None: ...


def _as_list(result: HandlerResult) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    return list(result)


class MemoryBus(Bus):
    """In-process transport for the embedded mode: one queue and one worker per subscription."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._queues: dict[str, list[tuple[Subscription, asyncio.Queue[tuple[bytes, str]]]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self.sent: list[tuple[str, bytes]] = []
        self._pending = 0

    async def _start(self) -> None:
        for subscription in self.subscriptions:
            queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
            for event_cls in subscription.event_classes:
                self._queues.setdefault(self.topic(event_cls), []).append((subscription, queue))
            for _ in range(subscription.concurrency):
                self._workers.append(asyncio.create_task(self._work(subscription, queue)))

    async def _work(self, subscription: Subscription, queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        while True:
            messages = [await queue.get()]
            while len(messages) < subscription.batch and not queue.empty():
                messages.append(queue.get_nowait())
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
            self._pending -= len(messages)

    async def _send(self, topic: str, key: str, payload: bytes) -> None:
        self.sent.append((topic, payload))
        for _subscription, queue in self._queues.get(topic, []):
            self._pending += 1
            queue.put_nowait((payload, topic))

    async def drain(self) -> None:
        """Wait until every queued message has been handled (tests, clean shutdown)."""
        while self._pending:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()


class KafkaBus(Bus):
    """Apache Kafka: FastStream consumers that commit after handling; an acks=all producer whose
    every send is accepted by the broker or fails within a bounded time (``delivery_timeout_ms``)."""

    def __init__(self, settings: Settings, client_id: str = "mdd") -> None:
        super().__init__(settings)
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
        """Create the internal topics that do not exist yet (consumers never rely on auto-creation)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, **aiokafka_options(self.settings)
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [topic for topic in self.all_topics() if topic not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(topic, self.settings.kafka_partitions, self.settings.kafka_replication_factor)
                        for topic in missing
                    ]
                )
        except Exception as exc:
            if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                raise
        finally:
            await admin.close()

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
                        await self.deliver(subscription, message.body, topic)

                return consume

            options: dict[str, Any] = (
                {"batch": True, "max_records": subscription.batch} if subscription.batch > 1 else {"max_workers": subscription.concurrency}
            )
            self.broker.subscriber(
                *topics,
                group_id=f"{self.settings.consumer_group_prefix}.{subscription.group}",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                auto_offset_reset="earliest",
                **options,
            )(consumer())
        await self.ensure_topics()
        await self._start_producer()
        await self.broker.start()

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
        await producer.start()
        self._producer = producer

    async def _send(self, topic: str, key: str, payload: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("El bus no está iniciado / bus not started")
        await self._producer.send_and_wait(
            topic, payload, key=key.encode(), headers=[("content-type", b"application/json")]
        )

    async def stop(self) -> None:
        await self.broker.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def build_bus(settings: Settings, client_id: str = "mdd") -> Bus:
    """The transport chosen by ``MDD_TRANSPORT``."""
    if settings.transport == "kafka":
        return KafkaBus(settings, client_id=client_id)
    return MemoryBus(settings)

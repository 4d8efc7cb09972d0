"""Sending each notification once and only once, as far as anyone outside can see.

A delivery is claimed in ``notify_delivery`` before anything is sent, so a redelivered event or a
restarted service finds the claim and sends nothing again. A send that fails is retried with
exponential backoff; after the last attempt the claim is ``failed`` and the original event goes to
the dead-letter topic. A claim still ``sending`` with nobody working on it (the service stopped
mid-send) is not resent — the message may already be out — but marked ``uncertain``, reported as a
failed ``notification.sent`` and dead-lettered, so that a person checks it.

The ``notification.sent`` of a delivery has a fixed event id, so publishing it again (after a
crash between the database and the broker) is harmless for every consumer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.events import DeadLetter, NotificationSent, producer, utc_now
from shared.runtime import ServiceContext
from services.notify.adapters.channels import send
from services.notify.rules import Notification
from services.notify.tables import NotificationRecord

log = logging.getLogger("mdd.notify")
SERVICE = "notify"
UNCERTAIN_DETAIL = (
    "Entrega incierta: el servicio se detuvo durante el envío; no se reenvía para no duplicar, verifique con el "
    "destinatario / uncertain delivery: the service stopped mid-send; not resent to avoid a duplicate, check with "
    "the recipient"
)


def event_id_for(key: str) -> UUID:
    """The fixed id of the ``notification.sent`` of one delivery."""
    return uuid5(NAMESPACE_URL, f"mdd-notify:{key}")


@dataclass(frozen=True)
class Origin:
    """What called for a delivery: the study (or digest) it belongs to and the message to dead-letter."""

    study_uid: str
    hospital_id: str
    correlation_id: str
    accession_number: str
    source_topic: str
    payload: str
    kind: str = "study"


@dataclass(frozen=True)
class Delivery:
    """One notification to deliver under one key."""

    key: str
    notification: Notification
    origin: Origin


class Deliverer:
    """Claims, sends with retries, records and reports deliveries."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.owner = uuid4().hex
        self.attempts = ctx.settings.notify_send_attempts
        self.backoff_seconds = ctx.settings.notify_backoff_seconds
        self.lease = timedelta(seconds=ctx.settings.notify_sending_lease_seconds)
        self.in_flight: set[str] = set()

    # --- database steps (run off the event loop)

    def _claim(self, delivery: Delivery) -> tuple[str, NotificationRecord | None]:
        """``claimed``, ``done`` (already finished), ``stale`` (left sending) or ``busy`` (another process sends)."""
        now = utc_now()
        n, origin = delivery.notification, delivery.origin
        with Session(self.ctx.engine) as session:
            record = session.get(NotificationRecord, delivery.key)
            if record is None:
                session.add(
                    NotificationRecord(
                        notification_key=delivery.key, event_id=str(event_id_for(delivery.key)), kind=origin.kind,
                        study_uid=origin.study_uid, hospital_id=origin.hospital_id, correlation_id=origin.correlation_id,
                        accession_number=origin.accession_number, rule=n.rule, channel=n.channel, recipient=n.label,
                        status="sending", owner=self.owner, source_topic=origin.source_topic, payload=origin.payload,
                        created_at=now, updated_at=now,
                    )
                )
                try:
                    session.commit()
                    return "claimed", None
                except IntegrityError:  # another process claimed it at the same moment
                    session.rollback()
                    record = session.get(NotificationRecord, delivery.key)
                    assert record is not None
            if record.status != "sending":
                return "done", record
            # Nobody in this process is sending it (we hold the in-flight slot): ours from before a
            # failure, or another process's that outlived its lease.
            if record.owner == self.owner or record.updated_at <= now - self.lease:
                return "stale", record
            return "busy", record

    def _finish(self, key: str, status: str, attempts: int, detail: str) -> NotificationRecord:
        with Session(self.ctx.engine) as session:
            result = session.exec(
                update(NotificationRecord)
                .where(col(NotificationRecord.notification_key) == key, col(NotificationRecord.status) == "sending")
                .values(status=status, attempts=attempts, detail=detail[:2000], updated_at=utc_now())
            )
            session.commit()
            if result.rowcount == 0:
                log.warning("Entrega %s ya marcada por otro proceso / already settled elsewhere", key)
            record = session.get(NotificationRecord, key)
            assert record is not None
            return record

    def _mark_dead_lettered(self, key: str) -> None:
        with Session(self.ctx.engine) as session:
            record = session.get(NotificationRecord, key)
            assert record is not None
            record.dead_lettered = True
            session.add(record)
            session.commit()

    def _stale_keys(self) -> list[str]:
        cutoff = utc_now() - self.lease
        with Session(self.ctx.engine) as session:
            return list(
                session.exec(
                    select(NotificationRecord.notification_key).where(
                        NotificationRecord.status == "sending", col(NotificationRecord.updated_at) <= cutoff
                    )
                ).all()
            )

    # --- sending

    async def _send(self, notification: Notification) -> tuple[str, int, str]:
        for attempt in range(1, self.attempts + 1):
            try:
                await asyncio.to_thread(send, notification.url, notification.subject, notification.body)
                return "sent", attempt, ""
            except Exception as exc:
                log.warning("Envío fallido %d/%d a %s: %s", attempt, self.attempts, notification.label, exc)
                if attempt == self.attempts:
                    return "failed", attempt, str(exc)
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _report(self, record: NotificationRecord) -> NotificationSent | None:
        """Dead-letter a failed or uncertain delivery once; the event to publish for a study delivery."""
        if record.status in ("failed", "uncertain") and not record.dead_lettered:
            await self.ctx.bus.dead_letter(
                DeadLetter(
                    stage=SERVICE,
                    source_topic=record.source_topic,
                    error=f"{record.rule} / {record.channel} / {record.recipient}: {record.status}: {record.detail}",
                    attempts=record.attempts,
                    study_uid=record.study_uid or None,
                    payload=record.payload,
                )
            )
            await asyncio.to_thread(self._mark_dead_lettered, record.notification_key)
        if record.kind != "study" or record.status == "sending":
            return None
        return NotificationSent(
            event_id=UUID(record.event_id),
            occurred_at=record.updated_at,
            study_uid=record.study_uid,
            hospital_id=record.hospital_id,
            correlation_id=record.correlation_id,
            accession_number=record.accession_number,
            producer=producer(SERVICE),
            rule=record.rule,
            channel=record.channel,
            recipient=record.recipient,
            status="sent" if record.status == "sent" else "failed",
            detail=record.detail,
        )

    async def _settle_stale(self, key: str) -> NotificationSent | None:
        record = await asyncio.to_thread(self._finish, key, "uncertain", 0, UNCERTAIN_DETAIL)
        if record.status == "uncertain":
            log.error("Entrega incierta / uncertain delivery: %s -> %s", record.rule, record.recipient)
        return await self._report(record)

    async def deliver(self, delivery: Delivery) -> NotificationSent | None:
        """Send once; the ``notification.sent`` to publish (again, if it was settled before)."""
        if delivery.key in self.in_flight:
            return None
        self.in_flight.add(delivery.key)
        try:
            state, record = await asyncio.to_thread(self._claim, delivery)
            if state == "busy":
                log.info("Otro proceso está enviando / another process is sending: %s", delivery.key)
                return None
            if state == "stale":
                return await self._settle_stale(delivery.key)
            if state == "done":
                assert record is not None
                log.info("Notificación ya resuelta / already settled (%s): %s", record.status, delivery.key)
                return await self._report(record)
            status, attempts, detail = await self._send(delivery.notification)
            record = await asyncio.to_thread(self._finish, delivery.key, status, attempts, detail)
            log.info("Notificación %s: %s -> %s", record.status, record.rule, record.recipient)
            return await self._report(record)
        finally:
            self.in_flight.discard(delivery.key)

    async def sweep(self) -> int:
        """Settle every delivery left ``sending`` past its lease; returns how many. Publishes their events."""
        settled = 0
        for key in await asyncio.to_thread(self._stale_keys):
            if key in self.in_flight:
                continue
            self.in_flight.add(key)
            try:
                event = await self._settle_stale(key)
            finally:
                self.in_flight.discard(key)
            if event is not None:
                await self.ctx.bus.publish(event)
            settled += 1
        return settled

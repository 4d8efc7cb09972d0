"""Every notification at least once, and seen once: intent recorded first, then sent under a stable id.

A notification is first recorded as an intent in ``notify_delivery`` (its rendered subject and
body, its channel's printable target and a Message-ID fixed by its key), then claimed and sent
(:mod:`shared.reliability.claims`). The sweep sends whatever is due: intents whose first try was
postponed, and claims whose owner died mid-send (its lease ran out).

- A channel that is down (SMTP server, SMS gateway, webhook answering 5xx) postpones the message
  with capped backoff, as long as it takes, without spending an attempt.
- A channel that refuses the message spends an attempt; after ``MDD_NOTIFY_SEND_ATTEMPTS`` the
  delivery is ``failed``, reported, and its event dead-lettered.
- A claim taken over after a crash is sent again under the same Message-ID / Idempotency-Key where
  the channel recognises a resend (e-mail, webhooks); on SMS and chat it cannot be known whether it
  went out, so it is settled ``uncertain`` and IT is told once (``MDD_IT_ALERT_CHANNELS``).

Settling a study delivery writes its ``notification.sent`` (a fixed event id) in the same
transaction, through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import update
from sqlmodel import Session, col

from shared.events import DeadLetter, Event, NotificationSent, producer, utc_now
from shared.mail import message_id_for
from shared.reliability.claims import FAILED, PENDING, SENT, UNCERTAIN, ClaimLedger
from shared.reliability.crashpoints import crash_point
from shared.reliability.deadletters import record_dead_letter
from shared.reliability.errors import describe, unavailable_dependency
from shared.reliability.health import HEALTH
from shared.reliability.outbox import add_events
from shared.reliability.retry import dependency_backoff, note_back_for, note_outage, until_available
from shared.runtime import ServiceContext
from services.notify.adapters.channels import DEDUPLICATING_KINDS, Channel, resolve_channel, send
from services.notify.config import RuleBook
from services.notify.rules import Notification
from services.notify.tables import NotificationRecord

log = logging.getLogger("mdd.notify")
SERVICE = "notify"
IT_ALERT = "it-alert"
UNCERTAIN_DETAIL = (
    "Entrega incierta: el servicio se detuvo durante el envío y este canal no distingue un reenvío; no se reenvía, "
    "verifique con el destinatario / uncertain delivery: the service stopped mid-send and this channel cannot tell a "
    "resend; not resent, check with the recipient"
)
GONE_DETAIL = "El canal ya no está en las reglas / the channel is no longer in the rules"


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

    @classmethod
    def of(cls, event: Event, source_topic: str) -> "Origin":
        """The origin of a study's deliveries: the event that called for them, on its topic."""
        return cls(event.study_uid, event.hospital_id, event.correlation_id, event.accession_number, source_topic,
                   event.model_dump_json())


@dataclass(frozen=True)
class Delivery:
    """One notification to deliver under one key."""

    key: str
    notification: Notification
    origin: Origin


class Deliverer:
    """Records, claims, sends, postpones and settles deliveries; reports them through the outbox."""

    def __init__(self, ctx: ServiceContext, book: RuleBook) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.book = book
        self.owner = uuid4().hex
        self.claims = ClaimLedger(ctx.engine, NotificationRecord, "notification_key", self.owner, settings.notify_sending_lease_seconds)
        self.attempts = settings.notify_send_attempts
        self.backoff_seconds = settings.notify_backoff_seconds
        self.mail_domain = settings.smtp_from.rpartition("@")[2] or "mdd.local"
        self.it_channels: list[Channel] = [resolve_channel(spec, settings, None) for spec in settings.it_alert_channels]
        self._wake_sweep: Callable[[], None] | None = None

    # --- intents

    def _record(self, deliveries: list[Delivery], reopen_failed: bool) -> None:
        now = utc_now()
        with Session(self.ctx.engine) as session:
            for delivery in deliveries:
                n, origin = delivery.notification, delivery.origin
                known = session.get(NotificationRecord, delivery.key)
                if known is not None:
                    if reopen_failed and known.status in (FAILED, UNCERTAIN):  # a replayed event: try what did not arrive
                        known.status, known.attempts, known.next_attempt_at, known.dead_lettered = PENDING, 0, now, False
                        session.add(known)
                    continue
                session.add(NotificationRecord(
                    notification_key=delivery.key, event_id=str(event_id_for(delivery.key)), kind=origin.kind,
                    study_uid=origin.study_uid, hospital_id=origin.hospital_id, correlation_id=origin.correlation_id,
                    accession_number=origin.accession_number, rule=n.rule, channel=n.channel, recipient=n.label,
                    recipient_id=n.recipient, target=n.target, subject=n.subject, body=n.body,
                    message_id=message_id_for(delivery.key, self.mail_domain), status=PENDING, owner="",
                    source_topic=origin.source_topic, payload=origin.payload, created_at=now, updated_at=now, next_attempt_at=now,
                ))
            session.commit()

    async def deliver_all(self, deliveries: list[Delivery], reopen_failed: bool = False) -> None:
        """Record the intents (those not recorded yet) and try each of them now.

        ``reopen_failed``: failed and uncertain deliveries among them are tried again (an operator replayed
        the event, after checking that an uncertain message did not arrive).
        """
        if not deliveries:
            return
        await until_available(lambda: asyncio.to_thread(self._record, deliveries, reopen_failed), "notify intents")
        await asyncio.gather(*(self.attempt(delivery.key) for delivery in deliveries))

    async def deliver(self, delivery: Delivery) -> None:
        """``deliver_all`` for one delivery."""
        await self.deliver_all([delivery])

    # --- sending

    def _load(self, key: str) -> NotificationRecord:
        with Session(self.ctx.engine, expire_on_commit=False) as session:
            record = session.get(NotificationRecord, key)
            assert record is not None, key
            session.expunge(record)
            return record

    def _channel_of(self, record: NotificationRecord) -> Channel | None:
        if record.kind == IT_ALERT:
            return next((c for c in self.it_channels if c.target == record.target and c.kind == record.channel), None)
        return self.book.channel(record.hospital_id, record.rule, record.recipient_id, record.channel, record.target)

    async def attempt(self, key: str) -> None:
        """Claim one intent and send it once; postpone or settle it by how that went."""
        claim = await asyncio.to_thread(self.claims.claim, key)
        if claim is None:
            return
        record = await asyncio.to_thread(self._load, key)
        if claim.takeover:
            log.warning("Envío interrumpido retomado / interrupted send taken over: %s -> %s", record.rule, record.recipient)
            if record.channel not in DEDUPLICATING_KINDS:
                await self._settle(record, UNCERTAIN, UNCERTAIN_DETAIL, record.attempts)
                return
        channel = self._channel_of(record)
        if channel is None:
            await self._settle(record, FAILED, GONE_DETAIL, record.attempts)
            return
        crash_point("notify.claimed")
        try:
            await asyncio.to_thread(send, channel, record.subject, record.body, record.message_id)
        except Exception as exc:
            await self._failed_send(record, claim.retries, exc)
            return
        crash_point("notify.sent")
        note_back_for(f"notify {record.channel}")
        await self._settle(record, SENT, "", record.attempts + 1)
        log.info("Notificación enviada / sent: %s -> %s", record.rule, record.recipient)

    async def _failed_send(self, record: NotificationRecord, retries: int, exc: Exception) -> None:
        dependency = unavailable_dependency(exc)
        if dependency is not None:
            note_outage(HEALTH, dependency, f"notify {record.channel}", exc)
            delay = dependency_backoff().delay(retries + 1)
            await until_available(
                lambda: asyncio.to_thread(self.claims.postpone, record.notification_key, delay, describe(exc), False), "notify"
            )
            self._wake_later(delay)
            return
        attempts = record.attempts + 1
        log.warning("Envío fallido %d/%d a %s: %s", attempts, self.attempts, record.recipient, describe(exc))
        if attempts >= self.attempts:
            await self._settle(record, FAILED, describe(exc), attempts)
            return
        delay = self.backoff_seconds * 2 ** (attempts - 1)
        await until_available(
            lambda: asyncio.to_thread(self.claims.postpone, record.notification_key, delay, describe(exc), True), "notify"
        )
        self._wake_later(delay)

    def _wake_later(self, delay: float) -> None:
        if self._wake_sweep is not None:
            asyncio.get_running_loop().call_later(delay, self._wake_sweep)

    # --- settling

    def _notification_sent(self, record: NotificationRecord, status: str, detail: str) -> NotificationSent:
        return NotificationSent(
            event_id=UUID(record.event_id), occurred_at=utc_now(), study_uid=record.study_uid, hospital_id=record.hospital_id,
            correlation_id=record.correlation_id, accession_number=record.accession_number, producer=producer(SERVICE),
            rule=record.rule, channel=record.channel, recipient=record.recipient,
            status="sent" if status == SENT else "failed", detail=detail,
        )

    def _settle_sync(self, record: NotificationRecord, status: str, detail: str, attempts: int) -> list[str]:
        prefix = self.ctx.settings.topic_prefix
        with Session(self.ctx.engine) as session:
            if not self.claims.settle(record.notification_key, status, detail, attempts, session=session):
                session.rollback()
                return []
            event_ids: list[str] = []
            if record.kind == "study":
                event_ids += add_events(session, [self._notification_sent(record, status, detail)])
            if status in (FAILED, UNCERTAIN) and record.kind != IT_ALERT:
                event_ids += record_dead_letter(session, DeadLetter(
                    stage=SERVICE, source_topic=record.source_topic, attempts=attempts, study_uid=record.study_uid or None, hospital_id=record.hospital_id or None,
                    error=f"{record.rule} / {record.channel} / {record.recipient}: {status}: {detail}", payload=record.payload,
                ), prefix)
                session.execute(update(NotificationRecord).where(
                    col(NotificationRecord.notification_key) == record.notification_key).values(dead_lettered=True))
            if status == UNCERTAIN:
                self._record_it_alerts(session, record)
            session.commit()
            return event_ids

    def _record_it_alerts(self, session: Session, record: NotificationRecord) -> None:
        """One alert to IT per IT channel about an uncertain delivery (recorded once, sent like any other)."""
        if not self.it_channels:
            log.error("Entrega incierta sin canal de TI (MDD_IT_ALERT_CHANNELS) / uncertain delivery, no IT channel: %s", record.recipient)
            return
        now = utc_now()
        subject = f"[MDD] Entrega incierta / uncertain delivery: {record.rule} -> {record.recipient}"
        body = (
            f"{UNCERTAIN_DETAIL}\n\nEstudio / study: {record.study_uid or '-'}  Acceso / accession: {record.accession_number or '-'}\n"
            f"Regla / rule: {record.rule}  Canal / channel: {record.channel}  Destinatario / recipient: {record.recipient}\n"
        )
        for channel in self.it_channels:
            key = f"{IT_ALERT}:{record.notification_key}:{channel.kind}:{channel.target}"
            if session.get(NotificationRecord, key) is not None:
                continue
            session.add(NotificationRecord(
                notification_key=key, event_id=str(event_id_for(key)), kind=IT_ALERT, study_uid=record.study_uid,
                hospital_id=record.hospital_id, correlation_id=record.correlation_id, accession_number=record.accession_number,
                rule=IT_ALERT, channel=channel.kind, recipient=f"TI / IT <{channel.target}>", recipient_id="it", target=channel.target,
                subject=subject, body=body, message_id=message_id_for(key, self.mail_domain), status=PENDING,
                source_topic=record.source_topic, payload=record.payload, created_at=now, updated_at=now, next_attempt_at=now,
            ))

    async def _settle(self, record: NotificationRecord, status: str, detail: str, attempts: int) -> None:
        event_ids = await until_available(lambda: asyncio.to_thread(self._settle_sync, record, status, detail, attempts), "notify")
        if status != SENT:
            log.error("Notificación %s: %s -> %s (%s)", status, record.rule, record.recipient, detail)
        await until_available(lambda: self.ctx.bus.outbox.flush(event_ids), "notify")
        if status == UNCERTAIN and self._wake_sweep is not None:
            self._wake_sweep()  # the alerts to IT

    # --- the sweep

    async def sweep(self, limit: int = 50) -> int:
        """Try every intent that is due (postponed ones, and claims whose owner died); how many were tried."""
        keys = await asyncio.to_thread(self.claims.due, limit)
        for start in range(0, len(keys), 10):
            await asyncio.gather(*(self.attempt(key) for key in keys[start:start + 10]))
        return len(keys)

    def bind_wake(self, wake: Callable[[], None]) -> None:
        """What wakes the sweep (called when a postponed intent falls due)."""
        self._wake_sweep = wake

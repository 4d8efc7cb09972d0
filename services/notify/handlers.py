"""Notify subscriber: results and failures in, messages out, ``notification.sent`` for each.

Each (study, rule, channel, recipient) is recorded before it is sent, so a redelivered event or a
restart never sends it twice; failures retry with exponential backoff and end as ``failed``.
"""

from __future__ import annotations

import asyncio
import logging

from sqlmodel import Session

from shared.events import Event, NotificationSent, follow_up, utc_now
from shared.runtime import ServiceContext
from services.notify.adapters.channels import email_url, send
from services.notify.rules import Notification, notifications_for
from services.notify.tables import NotificationRecord

log = logging.getLogger("mdd.notify")
SERVICE = "notify"
SEND_ATTEMPTS = 3


class NotifyHandlers:
    """Plans notifications by rule and delivers each at most once."""

    def __init__(self, ctx: ServiceContext, backoff_seconds: float = 1.0) -> None:
        self.ctx = ctx
        self.backoff_seconds = backoff_seconds

    def _claim(self, key: str, study_uid: str, notification: Notification) -> bool:
        """Record the notification as 'sending'; False when it was already claimed before."""
        with Session(self.ctx.engine) as session:
            if session.get(NotificationRecord, key) is not None:
                return False
            session.add(
                NotificationRecord(
                    notification_key=key,
                    study_uid=study_uid,
                    rule=notification.rule,
                    channel=notification.channel,
                    recipient=notification.recipient,
                    status="sending",
                    updated_at=utc_now(),
                )
            )
            session.commit()
            return True

    def _finish(self, key: str, status: str, attempts: int, detail: str) -> None:
        with Session(self.ctx.engine) as session:
            record = session.get(NotificationRecord, key)
            assert record is not None
            record.status, record.attempts, record.detail, record.updated_at = status, attempts, detail, utc_now()
            session.add(record)
            session.commit()

    async def _deliver(self, notification: Notification) -> tuple[str, int, str]:
        url = email_url(self.ctx.settings, notification.recipient)
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(send, url, notification.subject, notification.body)
                return "sent", attempt, ""
            except Exception as exc:
                log.warning("Envío fallido %d/%d a %s: %r", attempt, SEND_ATTEMPTS, notification.recipient, exc)
                if attempt == SEND_ATTEMPTS:
                    return "failed", attempt, str(exc)
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def on_event(self, event: Event) -> list[NotificationSent]:
        """Send what the rules ask for this event; already-sent notifications are skipped."""
        published: list[NotificationSent] = []
        for notification in notifications_for(self.ctx.settings, event):
            key = f"{event.study_uid}:{notification.key_suffix}"
            if not await asyncio.to_thread(self._claim, key, event.study_uid, notification):
                log.info("Notificación ya enviada / already sent: %s", key)
                continue
            status, attempts, detail = await self._deliver(notification)
            await asyncio.to_thread(self._finish, key, status, attempts, detail)
            log.info("Notificación %s: %s -> %s", status, notification.rule, notification.recipient)
            published.append(
                follow_up(  # type: ignore[arg-type]
                    event,
                    NotificationSent,
                    SERVICE,
                    rule=notification.rule,
                    channel=notification.channel,
                    recipient=notification.recipient,
                    status=status,
                    detail=detail,
                )
            )
        return published

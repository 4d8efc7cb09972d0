"""Notify subscriber: results, failures and overdue studies in; messages out, ``notification.sent`` for each.

The rules of the study's hospital decide the messages; each is recorded as an intent and tried at
once (see ``delivery``): what cannot go out now goes out when its channel is back. GREEN results
are also recorded for the daily digest.
"""

from __future__ import annotations

import asyncio
import logging

from shared.events import Event, StudyInferred
from shared.reliability.retry import until_available
from shared.runtime import ServiceContext
from services.notify.config import RuleBook
from services.notify.delivery import SERVICE, Deliverer, Delivery, Origin
from services.notify.digest import record_green
from services.notify.rules import notifications_for

log = logging.getLogger("mdd.notify")
__all__ = ["SERVICE", "NotifyHandlers"]  # SERVICE: the name every notify subscriber registers under


class NotifyHandlers:
    """Plans notifications by rule and delivers each at most once."""

    def __init__(self, ctx: ServiceContext, book: RuleBook, deliverer: Deliverer | None = None) -> None:
        self.ctx = ctx
        self.book = book
        self.deliverer = deliverer or Deliverer(ctx, book)

    async def on_event(self, event: Event) -> None:
        """Record and try what the rules ask for this event; what was recorded before is not sent again.

        Runs again for one event only when an operator replays it (the consumer ledger keeps
        redeliveries away): its failed deliveries are then tried again.
        """
        if isinstance(event, StudyInferred):
            await until_available(lambda: asyncio.to_thread(record_green, self.ctx.engine, event), "notify digest")
        planned = notifications_for(self.ctx.settings, event, self.book)
        origin = Origin.of(event, self.ctx.bus.topic(event))
        await self.deliverer.deliver_all(
            [Delivery(f"{event.hospital_id}:{event.study_uid}:{n.key_suffix}", n, origin) for n in planned], reopen_failed=True
        )

"""Notify subscriber: results, failures and overdue studies in; messages out, ``notification.sent`` for each.

The rules of the study's hospital decide the messages; all of them go out at once, each at most
once (see ``delivery``). GREEN results are also recorded for the daily digest.
"""

from __future__ import annotations

import asyncio
import logging

from shared.events import Event, NotificationSent, StudyInferred
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
        self.deliverer = deliverer or Deliverer(ctx)

    async def on_event(self, event: Event) -> list[NotificationSent]:
        """Send what the rules ask for this event; what was already sent is only reported again."""
        if isinstance(event, StudyInferred):
            await asyncio.to_thread(record_green, self.ctx.engine, event)
        planned = notifications_for(self.ctx.settings, event, self.book)
        origin = Origin(
            study_uid=event.study_uid,
            hospital_id=event.hospital_id,
            correlation_id=event.correlation_id,
            accession_number=event.accession_number,
            source_topic=self.ctx.bus.topic(event),
            payload=event.model_dump_json(),
        )
        results = await asyncio.gather(
            *(self.deliverer.deliver(Delivery(f"{event.study_uid}:{n.key_suffix}", n, origin)) for n in planned),
            return_exceptions=True,
        )
        # A database or broker error: let the bus retry the event; finished deliveries are not repeated.
        if errors := [result for result in results if isinstance(result, BaseException)]:
            raise errors[0]
        return [result for result in results if isinstance(result, NotificationSent)]

"""Notify service: e-mail by rule, once per study, rule and recipient (``mdd serve notify``)."""

from __future__ import annotations

from shared.db import init_db
from shared.events import StudyFailed, StudyInferred
from shared.runtime import ServiceContext
from services.notify.handlers import SERVICE, NotifyHandlers
from services.notify.tables import NotificationRecord


def register(ctx: ServiceContext) -> None:
    """Create the notification log and subscribe to results and failures."""
    init_db(ctx.engine, [NotificationRecord])
    handlers = NotifyHandlers(ctx)
    ctx.bus.subscribe(StudyInferred, handlers.on_event, service=SERVICE)
    ctx.bus.subscribe(StudyFailed, handlers.on_event, service=SERVICE, group=f"{SERVICE}-failures")


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)

"""Status API service: projection of every event, REST API and board (``mdd serve status_api``)."""

from __future__ import annotations

from shared.db import init_db
from shared.runtime import ServiceContext, WebComponent
from services.status_api.api import create_app
from services.status_api.projector import SERVICE, SUBSCRIBED_EVENTS, Projector
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow


def register(ctx: ServiceContext) -> WebComponent:
    """Create the tables, subscribe to every topic and serve the API."""
    init_db(ctx.engine, [StudyRow, StudyEventRow, NotificationRow])
    projector = Projector(ctx.engine)
    for event_cls in SUBSCRIBED_EVENTS:
        ctx.bus.subscribe(event_cls, projector.on_event, service=SERVICE, group=f"{SERVICE}.{event_cls.model_fields['event_type'].default}")
    return WebComponent(create_app(ctx), ctx.settings.api_host, ctx.settings.api_port)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)

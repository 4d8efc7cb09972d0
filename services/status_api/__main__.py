"""Status API service: projection of every event, REST API and board (``mdd serve status_api``)."""

from __future__ import annotations

from shared.db import init_db
from shared.runtime import ServiceContext, WebComponent
from services.status_api.api import create_app
from services.status_api.dicomweb_index import register_index
from services.status_api.live import BROADCASTER
from services.status_api.projector import SERVICE, SUBSCRIBED_EVENTS, Projector

PROJECTION_BATCH = 500  # events applied per transaction when they arrive faster than one at a time
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from services.status_api.watchdog import Watchdog


class StatusApiComponent(WebComponent):
    """The API's web server and the watchdog, started and stopped together."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(create_app(ctx), ctx.settings.api_host, ctx.settings.api_port)
        self.watchdog = Watchdog(ctx)

    async def start(self) -> None:
        await super().start()
        await self.watchdog.start()

    async def stop(self) -> None:
        await self.watchdog.stop()
        BROADCASTER.close()  # open SSE streams would keep the web server from stopping
        await super().stop()


def register(ctx: ServiceContext) -> WebComponent:
    """Create the tables, subscribe to every topic, serve the API and run the watchdog."""
    init_db(ctx.engine, [StudyRow, StudyEventRow, NotificationRow])
    projector = Projector(ctx.engine)
    # One consumer group over every topic: a batch holds a study's events of every kind, so each
    # study's timeline is read once per batch rather than once per topic.
    ctx.bus.subscribe_batch(
        SUBSCRIBED_EVENTS, projector.on_events, service=SERVICE, group=f"{SERVICE}.projection", max_records=PROJECTION_BATCH
    )
    register_index(ctx, SERVICE)
    return StatusApiComponent(ctx)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)

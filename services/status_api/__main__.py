"""Status API service: projection of every event, REST API and board (``mdd serve status_api``)."""

from __future__ import annotations

import anyio.to_thread

from shared.db import init_db
from shared.errors import ConfigurationError
from shared.runtime import ServiceContext, WebComponent, WebLimits
from services.status_api.api import create_app
from services.status_api.change_feed import ChangeListener
from services.status_api.dicomweb_index import register_index
from services.status_api.live import BROADCASTER
from services.status_api.projector import SERVICE, SUBSCRIBED_EVENTS, Projector
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from services.status_api.watchdog import Watchdog

PROJECTION_BATCH = 500  # events applied per transaction when they arrive faster than one at a time


class StatusApiComponent(WebComponent):
    """The API's web server, the watchdog and the other replicas' change notices, started and stopped together."""

    def __init__(self, ctx: ServiceContext) -> None:
        settings = ctx.settings
        if settings.api_reuse_port and (settings.transport != "kafka" or ctx.engine.dialect.name != "postgresql"):
            raise ConfigurationError(
                "MDD_API_REUSE_PORT necesita Kafka y PostgreSQL: las réplicas comparten eventos y base de datos / "
                "MDD_API_REUSE_PORT needs Kafka and PostgreSQL: replicas share the events and the database"
            )
        super().__init__(
            create_app(ctx), settings.api_host, settings.api_port, reuse_port=settings.api_reuse_port,
            forwarded_allow_ips=settings.api_forwarded_allow_ips, limits=WebLimits.of_api(settings),
        )
        self.watchdog = Watchdog(ctx)
        self.changes = ChangeListener(ctx.engine)
        self.pool_size = ctx.settings.database_pool_size

    async def start(self) -> None:
        # No more requests in worker threads than pooled connections: past that, requests queue for a
        # thread instead of opening and closing connections (each one a PostgreSQL process) under load.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.pool_size
        self.changes.start()
        await super().start()
        await self.watchdog.start()

    async def stop(self) -> None:
        await self.watchdog.stop()
        BROADCASTER.close()  # open SSE streams would keep the web server from stopping
        await super().stop()
        self.changes.stop()


def register(ctx: ServiceContext) -> WebComponent:
    """Create the tables, subscribe to every topic, serve the API and run the watchdog."""
    init_db(ctx.engine, [StudyRow, StudyEventRow, NotificationRow])
    projector = Projector(ctx.engine)
    # One consumer group over every topic: a batch holds a study's events of every kind, so each
    # study's timeline is read once per batch rather than once per topic.
    ctx.bus.subscribe_batch(
        SUBSCRIBED_EVENTS, projector.on_events, service=SERVICE, group=f"{SERVICE}.projection", max_records=PROJECTION_BATCH
    )
    register_index(ctx)
    return StatusApiComponent(ctx)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)

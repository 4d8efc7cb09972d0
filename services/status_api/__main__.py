"""Status API service: projection of every event, REST API and board (``mdd serve status_api``)."""

from __future__ import annotations

import asyncio

import uvicorn

from shared.db import init_db
from shared.runtime import ServiceContext
from services.status_api.api import create_app
from services.status_api.projector import SERVICE, SUBSCRIBED_EVENTS, Projector
from services.status_api.tables import StudyEventRow, StudyRow


class ApiComponent:
    """Runs uvicorn inside the service's event loop."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        config = uvicorn.Config(
            create_app(ctx), host=ctx.settings.api_host, port=ctx.settings.api_port, log_config=None, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task:
            await self._task


def register(ctx: ServiceContext) -> ApiComponent:
    """Create the tables, subscribe to every topic and serve the API."""
    init_db(ctx.engine, [StudyRow, StudyEventRow])
    projector = Projector(ctx.engine)
    for event_cls in SUBSCRIBED_EVENTS:
        ctx.bus.subscribe(event_cls, projector.on_event, service=SERVICE, group=f"{SERVICE}.{event_cls.model_fields['event_type'].default}")
    return ApiComponent(ctx)


if __name__ == "__main__":
    from services.cli import serve

    serve(SERVICE)

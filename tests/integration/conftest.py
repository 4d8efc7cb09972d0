"""Fixtures of the integration tests: an ingest service running in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shared.local_secrets import ingest_http_token
from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from services.ingest.__main__ import register


@asynccontextmanager
async def ingest_running(settings: Settings) -> AsyncIterator[ServiceContext]:
    """The ingest service (SCP, web front doors, quiet-study watcher, the index its Query/Retrieve SCP
    searches) on the in-process bus, registered as ``mdd serve ingest`` registers it."""
    ctx = build_context(settings)
    component = register(ctx)
    await ctx.bus.start()
    await component.start()
    try:
        yield ctx
    finally:
        await component.stop()
        await ctx.bus.stop()


@pytest.fixture
async def running_ingest(settings: Settings) -> AsyncIterator[ServiceContext]:
    """Ingest with the test's embedded settings."""
    async with ingest_running(settings) as ctx:
        yield ctx


@pytest.fixture
def ingest_web(running_ingest: ServiceContext) -> tuple[ServiceContext, str]:
    """The running ingest and the base URL of its HTTP front doors."""
    return running_ingest, f"http://127.0.0.1:{running_ingest.settings.ingest_http_port}"


def door_headers(ctx: ServiceContext) -> dict[str, str]:
    """What the status API presents at ingest's HTTP doors when it forwards a request it authenticated."""
    return {"Authorization": f"Bearer {ingest_http_token(ctx.settings)}"}

"""Notify's clock: sends the daily digests when due and settles deliveries a stopped service left behind."""

from __future__ import annotations

import asyncio
import logging

from services.notify.delivery import Deliverer
from services.notify.digest import DailyDigest

log = logging.getLogger("mdd.notify")


class NotifyScheduler:
    """A component that runs the digest and the sweep at start-up and then every ``tick_seconds``."""

    def __init__(self, digest: DailyDigest, deliverer: Deliverer, tick_seconds: float = 30.0) -> None:
        self.digest = digest
        self.deliverer = deliverer
        self.tick_seconds = tick_seconds
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        """One round: settle stale deliveries, then send the digests that are due."""
        settled = await self.deliverer.sweep()
        if settled:
            log.warning("Entregas inciertas reportadas / uncertain deliveries reported: %d", settled)
        await self.digest.run_due()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a database or broker hiccup must not stop the clock
                log.exception("Ronda del programador fallida / scheduler round failed")
            await asyncio.sleep(self.tick_seconds)

    async def start(self) -> None:
        """Start ticking in the background."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

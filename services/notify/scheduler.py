"""Notify's clock: the delivery sweep (every second) and the daily digests (every ``tick_seconds``)."""

from __future__ import annotations

import logging

from shared.reliability.periodic import PeriodicTask
from services.notify.delivery import Deliverer
from services.notify.digest import DailyDigest

log = logging.getLogger("mdd.notify")
SWEEP_SECONDS = 1.0


class NotifyScheduler:
    """A component with two periodic tasks: send what is due, and send the digests that are due.

    Neither needs a leader: every delivery is claimed before it is sent, so replicas share the work.
    """

    def __init__(self, digest: DailyDigest, deliverer: Deliverer, tick_seconds: float = 30.0) -> None:
        self.digest = digest
        self.deliverer = deliverer
        self.sweeper = PeriodicTask("notify.sweep", deliverer.sweep, SWEEP_SECONDS)
        self.digests = PeriodicTask("notify.digest", digest.run_due, tick_seconds)
        deliverer.bind_wake(self.sweeper.wake)

    async def tick(self) -> None:
        """One round of each: what is due is sent, then the digests that are due."""
        await self.deliverer.sweep()
        await self.digest.run_due()

    async def start(self) -> None:
        """Start both tasks in the background."""
        await self.sweeper.start()
        await self.digests.start()

    async def stop(self) -> None:
        """Stop both tasks."""
        await self.digests.stop()
        await self.sweeper.stop()

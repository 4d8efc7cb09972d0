"""One periodic task loop: run a coroutine every interval, optionally on the lease holder only.

A round that fails because a dependency is down is logged once per outage (see
:mod:`shared.reliability.retry`) and the next round tries again; any other error is logged with its
traceback. The loop never dies of an error. With a :class:`LeaderLease`, only the replica holding
the lease runs the rounds; the others keep trying to take it, so one takes over when the leader dies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.reliability.errors import unavailable_dependency
from shared.reliability.health import HEALTH
from shared.reliability.lease import LeaderLease
from shared.reliability.retry import note_back_for, note_outage

log = logging.getLogger("mdd.reliability")


class PeriodicTask:
    """A component that runs ``work`` now and then every ``interval_seconds`` until stopped."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        interval_seconds: float,
        lease: LeaderLease | None = None,
    ) -> None:
        self.name = name
        self.work = work
        self.interval_seconds = interval_seconds
        self.lease = lease
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.rounds = 0

    def wake(self) -> None:
        """Run the next round now instead of at the end of the interval."""
        self._wake.set()

    async def run_once(self) -> bool:
        """One round (if this replica leads); False when it failed or another replica leads."""
        try:
            if self.lease is not None and not await asyncio.to_thread(self.lease.acquire):
                return False
            await self.work()
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None:
                log.exception("Ronda de %s fallida; se reintenta / round of %s failed; retrying", self.name, self.name)
            else:
                note_outage(HEALTH, dependency, self.name, exc)
            return False
        note_back_for(self.name)
        self.rounds += 1
        return True

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_seconds)
            except asyncio.TimeoutError:
                pass

    async def start(self) -> None:
        """Start the loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"periodic:{self.name}")

    async def stop(self) -> None:
        """Stop the loop and release the lease (if held)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.lease is not None:
            try:
                await asyncio.to_thread(self.lease.release)
            except Exception as exc:  # the database may be down at shutdown; the lease then simply expires
                log.debug("Arrendamiento no liberado / lease not released: %r", exc)

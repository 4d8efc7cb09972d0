"""One retry policy: capped exponential backoff, and waiting out an unavailable dependency.

``Backoff`` says how long to wait before the n-th retry. ``until_available`` (async) and
``until_available_sync`` (threads) run a call again and again while it fails because a dependency
is down, recording the outage in :data:`shared.reliability.health.HEALTH`; a deterministic error is
raised at once for the caller to count.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.reliability.errors import Dependency, describe, unavailable_dependency
from shared.reliability.health import HEALTH, DependencyHealth

log = logging.getLogger("mdd.reliability")
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with a little jitter (so that replicas do not retry in step)."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 15.0
    jitter: float = 0.1

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        base = min(self.cap, self.initial * self.factor ** max(0, retry - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter)) if self.jitter else base


_dependency_backoff = Backoff(initial=0.5, factor=2.0, cap=15.0)


def dependency_backoff() -> Backoff:
    """How this process waits for a dependency that is down: quick at first, then every
    ``MDD_DEPENDENCY_RETRY_MAX_SECONDS`` at most."""
    return _dependency_backoff


def configure_dependency_backoff(max_seconds: float) -> None:
    """Set the longest wait between two tries of a dependency that is down (from the settings)."""
    global _dependency_backoff
    _dependency_backoff = Backoff(initial=min(0.5, max_seconds), factor=2.0, cap=max_seconds)


def note_outage(health: DependencyHealth, dependency: Dependency, what: str, exc: BaseException) -> None:
    """Record (and log, once per outage) that ``what`` waits for ``dependency``."""
    if health.mark_down(dependency, what, describe(exc)):
        log.warning(
            "Dependencia no disponible (%s); %s espera sin gastar intentos / dependency unavailable, waiting: %s",
            dependency.value, what, describe(exc),
        )


def note_recovery(health: DependencyHealth, dependency: Dependency, what: str) -> None:
    """Record (and log) that ``dependency`` answered again."""
    if (outage := health.mark_up(dependency)) is not None:
        log.warning("Dependencia disponible de nuevo (%s) / dependency back: %s", dependency.value, what)
        del outage


def note_back_for(what: str, health: DependencyHealth = HEALTH) -> None:
    """Record that every dependency ``what`` was waiting for answered again (``what`` just succeeded)."""
    for entry in health.down():
        if entry.waiting == what:
            note_recovery(health, entry.dependency, what)


async def until_available(
    call: Callable[[], Awaitable[T]],
    what: str,
    backoff: Backoff | None = None,
    health: DependencyHealth = HEALTH,
    stop: asyncio.Event | None = None,
) -> T:
    """``await call()`` until it does not fail for want of a dependency; other errors are raised.

    ``stop``, when set, ends the wait by raising the last transient error.
    """
    retry = 0
    waited_on: Dependency | None = None
    while True:
        try:
            result = await call()
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None or (stop is not None and stop.is_set()):
                raise
            note_outage(health, dependency, what, exc)
            waited_on = dependency
            retry += 1
            await asyncio.sleep((backoff or _dependency_backoff).delay(retry))
            continue
        if waited_on is not None:
            note_recovery(health, waited_on, what)
        return result


def until_available_sync(
    call: Callable[[], T], what: str, backoff: Backoff | None = None, health: DependencyHealth = HEALTH,
    deadline: float | None = None,
) -> T:
    """``call()`` in a thread until it does not fail for want of a dependency; other errors are raised.

    With ``deadline`` (a ``time.monotonic()`` value), the last transient error is raised once it passes.
    """
    retry = 0
    waited_on: Dependency | None = None
    while True:
        try:
            result = call()
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None:
                raise
            note_outage(health, dependency, what, exc)
            waited_on = dependency
            retry += 1
            pause = (backoff or _dependency_backoff).delay(retry)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            continue
        if waited_on is not None:
            note_recovery(health, waited_on, what)
        return result


class AttemptsSpent(RuntimeError):
    """A call failed deterministically on every attempt; ``attempts`` tells how many, ``__cause__`` the last error."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"{attempts} intento(s) / attempt(s): {describe(last)}")
        self.attempts = attempts
        self.last = last


async def with_attempts(call: Callable[[], Awaitable[T]], attempts: int, backoff_seconds: float, what: str) -> T:
    """``await call()``, again after a deterministic failure (exponential backoff), up to ``attempts`` times.

    A failure because a dependency is down is raised at once, for the caller's caller to wait it out
    (it spends no attempt); after the last deterministic failure :class:`AttemptsSpent` is raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if unavailable_dependency(exc) is not None:
                raise
            log.warning("Intento %d/%d de %s falló / attempt failed: %s", attempt, attempts, what, describe(exc))
            if attempt == attempts:
                raise AttemptsSpent(attempts, exc) from exc
            await asyncio.sleep(backoff_seconds * 2 ** (attempt - 1))
    raise AssertionError("unreachable")

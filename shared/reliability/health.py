"""Which dependencies this process found down, and since when: what ``/healthz`` reports.

Every retry loop of :mod:`shared.reliability.retry` marks the dependency it waits for as down and
marks it up again once a call through it succeeds. The registry is per process (a service's own
view of its dependencies); it never blocks and never raises.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.events import utc_now
from shared.reliability.errors import Dependency


@dataclass(frozen=True)
class DependencyDown:
    """A dependency found unavailable: since when, what was waiting for it and the last error."""

    dependency: Dependency
    since: datetime
    waiting: str
    reason: str


class DependencyHealth:
    """Thread-safe registry of the dependencies currently down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[Dependency, DependencyDown] = {}

    def mark_down(self, dependency: Dependency, waiting: str, reason: str) -> bool:
        """Record ``dependency`` as down; True the first time in an outage (to log it once)."""
        with self._lock:
            known = self._down.get(dependency)
            self._down[dependency] = DependencyDown(dependency, known.since if known else utc_now(), waiting, reason[:500])
            return known is None

    def mark_up(self, dependency: Dependency) -> DependencyDown | None:
        """Record ``dependency`` as available again; the outage that ended, if there was one."""
        with self._lock:
            return self._down.pop(dependency, None)

    def down(self) -> list[DependencyDown]:
        """The dependencies down now, oldest outage first."""
        with self._lock:
            return sorted(self._down.values(), key=lambda entry: entry.since)

    def clear(self) -> None:
        """Forget every outage (tests)."""
        with self._lock:
            self._down.clear()


HEALTH = DependencyHealth()
"""The process's registry."""


class DependencyState(BaseModel):
    """One dependency as ``/healthz`` shows it."""

    dependency: str
    up: bool
    since: datetime | None = None
    waiting: str = Field("", description="What is waiting for it")
    reason: str = ""


class HealthReport(BaseModel):
    """Liveness, readiness and the dependencies found down (reads keep being served meanwhile)."""

    status: Literal["ok", "degraded"]
    ready: bool
    dependencies: list[DependencyState] = Field(default_factory=list)


def database_reachable(engine: Engine) -> str | None:
    """``None`` when the database answers a trivial query, else why it does not."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def health_report(engine: Engine | None, ready: bool, health: DependencyHealth = HEALTH) -> HealthReport:
    """What ``/healthz`` answers: the database probed now, plus every outage this process is waiting out."""
    down = {entry.dependency.value: entry for entry in health.down()}
    states = [
        DependencyState(dependency=name, up=False, since=entry.since, waiting=entry.waiting, reason=entry.reason)
        for name, entry in down.items()
    ]
    if engine is not None and Dependency.DATABASE.value not in down:
        if (problem := database_reachable(engine)) is not None:
            states.append(DependencyState(dependency=Dependency.DATABASE.value, up=False, reason=problem))
    return HealthReport(status="degraded" if states else "ok", ready=ready, dependencies=states)

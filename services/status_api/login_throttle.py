"""Sign-in throttling: failed passwords counted per username and per client address, in the database.

Counts live in ``auth_login_throttle``, so every replica of the API sees the same ones. A subject
(``user:NAME`` or ``client:ADDRESS``) that reaches its limit within the window is locked for the
lockout time; while locked, tries are refused before any password is checked. A successful sign-in
clears the username's count, not the address's: one valid account must not reset a guessing run
against other accounts from the same address.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col, delete, select

from shared.events import utc_now
from shared.settings import Settings
from services.status_api.auth_tables import LoginThrottleRow

log = logging.getLogger("mdd.status_api.login")
MAX_NAME = 200  # longer usernames are counted under their first characters (the key stays small)


@dataclass(frozen=True)
class Lockout:
    """A subject refused until ``until``."""

    subject: str
    until: datetime

    @property
    def retry_after(self) -> int:
        """Whole seconds until the lock ends (at least 1), for ``Retry-After``."""
        return max(1, math.ceil((self.until - utc_now()).total_seconds()))

    @property
    def reason(self) -> str:
        """Why the sign-in is refused, Spanish first."""
        who = ("este usuario / this username" if self.subject.startswith("user:")
               else "esta dirección / this client address")
        return (f"Demasiados intentos fallidos; bloqueado: {who}; reintente en {self.retry_after} s / "
                f"too many failed sign-ins; locked: retry in {self.retry_after} s")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)  # SQLite drops the zone


@dataclass(frozen=True)
class Subjects:
    """What one sign-in try is counted against."""

    user: str
    client: str

    @classmethod
    def of(cls, username: str, client: str) -> Subjects:
        """The subjects of a try by ``username`` from ``client``."""
        return cls(user=f"user:{username[:MAX_NAME]}", client=f"client:{client[:MAX_NAME]}")


class LoginThrottle:
    """Counts failures and decides lockouts (settings ``MDD_AUTH_LOGIN_*``)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.limits = {"user": settings.auth_login_max_failures, "client": settings.auth_login_max_client_failures}
        self.window = timedelta(minutes=settings.auth_login_window_minutes)
        self.lockout = timedelta(minutes=settings.auth_login_lockout_minutes)

    def locked(self, subjects: Subjects) -> Lockout | None:
        """The lock that refuses this try now, or None (the longest one if both are locked)."""
        now = utc_now()
        with Session(self.engine) as session:
            rows = session.exec(select(LoginThrottleRow).where(col(LoginThrottleRow.subject).in_([subjects.user, subjects.client])))
            locks = [Lockout(row.subject, _aware(row.locked_until)) for row in rows
                     if row.locked_until is not None and _aware(row.locked_until) > now]
        return max(locks, key=lambda lock: lock.until) if locks else None

    def failed(self, subjects: Subjects) -> list[Lockout]:
        """Count a wrong password against both subjects; the locks this failure started."""
        for attempt in range(2):
            try:
                return self._count_failure(subjects)
            except IntegrityError:  # another replica inserted the same subject first: count on its row
                if attempt:
                    raise
        return []

    def _count_failure(self, subjects: Subjects) -> list[Lockout]:
        now = utc_now()
        started: list[Lockout] = []
        with Session(self.engine) as session:
            for kind, subject in (("user", subjects.user), ("client", subjects.client)):
                row = session.exec(select(LoginThrottleRow).where(LoginThrottleRow.subject == subject).with_for_update()).first()
                if row is None:
                    row = LoginThrottleRow(subject=subject, failures=0, window_started=now)
                if _aware(row.window_started) + self.window <= now:  # a new window
                    row.failures, row.window_started = 0, now
                row.failures += 1
                if row.failures >= self.limits[kind]:
                    row.locked_until, row.failures, row.window_started = now + self.lockout, 0, now
                    started.append(Lockout(subject, now + self.lockout))
                session.add(row)
                session.flush()
            session.commit()
        self._forget_stale(now)
        return started

    def _forget_stale(self, now: datetime) -> None:
        """Drop counts whose window and lock are over, so that guessed usernames do not pile up rows.

        Best effort, in its own transaction: a concurrent clean-up that conflicts with this one is harmless.
        """
        try:
            with Session(self.engine) as session:
                session.exec(delete(LoginThrottleRow).where(  # type: ignore[call-overload]
                    col(LoginThrottleRow.window_started) < now - self.window,
                    col(LoginThrottleRow.locked_until).is_(None) | (col(LoginThrottleRow.locked_until) < now),
                ))
                session.commit()
        except DBAPIError:
            log.warning("Limpieza de intentos viejos aplazada / stale sign-in counts clean-up deferred", exc_info=True)

    def succeeded(self, subjects: Subjects) -> None:
        """A right password: the username starts again from no failures."""
        with Session(self.engine) as session:
            session.exec(delete(LoginThrottleRow).where(col(LoginThrottleRow.subject) == subjects.user))  # type: ignore[call-overload]
            session.commit()

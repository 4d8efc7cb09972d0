"""The claim ledger: a side effect (a message, an offer) is recorded as an intent before it is attempted.

Each intent is a row of a service's own table with the columns of :class:`ClaimColumns`. Its life:

``pending`` (due at ``next_attempt_at``) → ``sending`` (claimed by ``owner`` until ``lease_until``)
→ ``sent`` | ``failed`` | ``uncertain``, or back to ``pending`` with a later ``next_attempt_at``.

A claim is taken atomically, so one replica sends at a time. A claim whose owner died (its lease
ran out) is taken over by whoever claims next: the taker learns that it is a takeover and decides,
by channel, whether to send again under the same idempotency key (e-mail Message-ID, webhook key,
DICOM SOP Instance UID) or to settle it ``uncertain``. A failure because a dependency is down
postpones the intent without spending an attempt; a deterministic failure spends one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col

from shared.events import utc_now

PENDING, SENDING, SENT, FAILED, UNCERTAIN = "pending", "sending", "sent", "failed", "uncertain"
SETTLED = frozenset({SENT, FAILED, UNCERTAIN})


class ClaimColumns(SQLModel):
    """The columns the ledger works on; a service's table of intents inherits them (with its own key)."""

    status: str
    attempts: int = Field(0, description="Deterministic failures (refusals) so far")
    retries: int = Field(0, description="Times it was postponed (a dependency down, or a failure)")
    detail: str = ""
    owner: str = Field("", description="Process that holds the claim")
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    next_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True), index=True)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Claim:
    """An intent this process now holds: its key, its attempts so far, and whether it took it over."""

    key: str
    attempts: int
    retries: int
    takeover: bool


def _aware(moment: datetime | None) -> datetime | None:
    from datetime import timezone

    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


class ClaimLedger:
    """Claims over one table whose rows carry ``status``, ``owner``, ``lease_until``, ``attempts``
    (deterministic failures), ``retries`` (every postponement), ``next_attempt_at``, ``detail`` and
    ``updated_at`` next to the key column ``key_column``."""

    def __init__(self, engine: Engine, table: Any, key_column: str, owner: str, lease_seconds: float) -> None:
        self.engine = engine
        self.table = table.__table__ if hasattr(table, "__table__") else table
        self.key = self.table.c[key_column]
        self.owner = owner
        self.lease = timedelta(seconds=lease_seconds)

    def _claimable(self, now: datetime) -> Any:
        c = self.table.c
        return or_(
            and_(c.status == PENDING, or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)),
            and_(c.status == SENDING, or_(c.lease_until.is_(None), c.lease_until < now)),
        )

    def due(self, limit: int = 100, now: datetime | None = None) -> list[str]:
        """Keys that can be claimed now: pending and due, or sending with an expired lease."""
        now = now or utc_now()
        with Session(self.engine) as session:
            query = select(self.key).where(self._claimable(now)).order_by(self.table.c.updated_at).limit(limit)
            return [str(key) for key in session.execute(query).scalars()]

    def claim(self, key: str, now: datetime | None = None) -> Claim | None:
        """Take the intent ``key`` for this process; ``None`` when it is settled, not due, or held by a live owner."""
        now = now or utc_now()
        c = self.table.c
        with Session(self.engine) as session:
            row = session.execute(select(c.status, c.attempts, c.retries).where(self.key == key)).first()
            if row is None or row.status in SETTLED:
                return None
            taken = session.execute(
                update(self.table)
                .where(self.key == key, c.status == row.status, self._claimable(now))
                .values(status=SENDING, owner=self.owner, lease_until=now + self.lease, updated_at=now)
            ).rowcount
            session.commit()
        if not taken:
            return None
        return Claim(key, int(row.attempts or 0), int(row.retries or 0), takeover=row.status == SENDING)

    def _settle(self, key: str, values: dict[str, Any]) -> bool:
        c = self.table.c
        with Session(self.engine) as session:
            done = session.execute(
                update(self.table)
                .where(self.key == key, c.status == SENDING, c.owner == self.owner)
                .values(updated_at=utc_now(), **values)
            ).rowcount
            session.commit()
        return bool(done)

    def settle(self, key: str, status: str, detail: str = "", attempts: int | None = None, session: Session | None = None) -> bool:
        """End a held intent as ``sent``, ``failed`` or ``uncertain``; False when this process no longer holds it.

        With ``session``, the change joins the caller's transaction (to commit it with an outbox event).
        """
        values: dict[str, Any] = {"status": status, "detail": detail[:2000], "lease_until": None}
        if attempts is not None:
            values["attempts"] = attempts
        if session is None:
            return self._settle(key, values)
        c = self.table.c
        done = session.execute(
            update(self.table).where(self.key == key, c.status == SENDING, c.owner == self.owner).values(updated_at=utc_now(), **values)
        ).rowcount
        return bool(done)

    def postpone(self, key: str, delay_seconds: float, detail: str, spend_attempt: bool) -> bool:
        """Give a held intent back as pending, due again after ``delay_seconds``; counts an attempt if asked."""
        c = self.table.c
        values: dict[str, Any] = {
            "status": PENDING, "detail": detail[:2000], "lease_until": None, "retries": c.retries + 1,
            "next_attempt_at": utc_now() + timedelta(seconds=delay_seconds),
        }
        if spend_attempt:
            values["attempts"] = c.attempts + 1
        return self._settle(key, values)

    def renew(self, keys: list[str]) -> int:
        """Extend this process's leases on ``keys`` (a long send keeps its claim); how many were renewed."""
        if not keys:
            return 0
        c = self.table.c
        now = utc_now()
        with Session(self.engine) as session:
            renewed = session.execute(
                update(self.table)
                .where(col(self.key).in_(keys), c.status == SENDING, c.owner == self.owner)
                .values(lease_until=now + self.lease)
            ).rowcount
            session.commit()
        return int(renewed or 0)

    def lease_expired(self, lease_until: datetime | None, now: datetime | None = None) -> bool:
        """Whether a lease end read from the table is past (SQLite returns naive UTC)."""
        moment = _aware(lease_until)
        return moment is None or moment < (now or utc_now())

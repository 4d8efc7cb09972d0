"""Leadership leases in the database: one replica of a service runs a periodic scan at a time.

A lease is a row (name, owner, expires_at). A replica takes it when it is free or expired, keeps it
by renewing it before it expires, and loses it when it stops renewing (a crash): after ``ttl`` the
next replica takes over. Nothing lives in a process: two processes never both believe they hold it
for longer than the clock skew between them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.events import utc_now
from shared.reliability.tables import LeaseRow

_table = LeaseRow.__table__  # type: ignore[attr-defined]


class LeaderLease:
    """The lease ``name`` as held, or wanted, by this process."""

    def __init__(self, engine: Engine, name: str, ttl_seconds: float = 30.0, owner: str | None = None) -> None:
        self.engine = engine
        self.name = name
        self.ttl = timedelta(seconds=ttl_seconds)
        self.owner = owner or uuid.uuid4().hex

    def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = utc_now()
        with Session(self.engine) as session:
            renewed = session.execute(
                update(_table)
                .where(_table.c.name == self.name, or_(_table.c.owner == self.owner, _table.c.expires_at < now))
                .values(owner=self.owner, expires_at=now + self.ttl)
            ).rowcount
            session.commit()
            if renewed:
                return True
            try:
                session.execute(insert(_table).values(name=self.name, owner=self.owner, expires_at=now + self.ttl))
                session.commit()
                return True
            except IntegrityError:  # another replica holds it
                session.rollback()
                return False

    def release(self) -> None:
        """Give the lease up now (a clean stop), so that another replica takes over at once."""
        with Session(self.engine) as session:
            session.execute(
                update(_table).where(_table.c.name == self.name, _table.c.owner == self.owner).values(expires_at=utc_now())
            )
            session.commit()

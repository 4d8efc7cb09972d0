"""The consumer ledger: per (consumer group, event) the attempts begun and, once handled, what came out.

An attempt is counted, and committed, *before* the handler runs, so a message that kills its
consumer (out of memory, a crash) is still counted when it is redelivered: an attempt begun and
never ended is an interruption, and after ``MDD_MAX_INTERRUPTED_ATTEMPTS`` of them the message is
dead-lettered instead of crashing the service again. A deterministic failure is counted apart
(``MDD_MAX_DELIVERY_ATTEMPTS``); a failure because a dependency is down gives its attempt back. Once handled, the events the handler produced
are kept: a redelivered message publishes them again — same ids — instead of doing the work twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from shared.events import utc_now
from shared.reliability.tables import ConsumedRow

RUNNING, FAILED, DONE, DEAD = "running", "failed", "done", "dead"
_table = ConsumedRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Attempt:
    """Where one consumer stands with one event when it begins an attempt."""

    status: str
    attempts: int
    last_error: str
    outputs: list[dict] | None
    failures: int = 0

    @property
    def interruptions(self) -> int:
        """Earlier attempts that never ended: their consumer died while handling the message."""
        return max(0, self.attempts - 1 - self.failures)

    @property
    def finished(self) -> bool:
        """Handled (its outputs kept) or dead-lettered: nothing more to run."""
        return self.status in (DONE, DEAD)


def _key(consumer: str, event_id: str) -> object:
    return (_table.c.consumer == consumer) & (_table.c.event_id == event_id)


class ConsumerLedger:
    """Attempt counts and outputs of every consumer group, in the service's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, consumer: str, event_id: str, study_uid: str = "", hospital_id: str = "") -> Attempt:
        """Count one more attempt (committed) unless the event is finished; where it stands now."""
        now = utc_now()
        with Session(self.engine) as session:
            try:
                session.execute(insert(_table).values(
                    consumer=consumer, event_id=event_id, study_uid=study_uid, hospital_id=hospital_id, status=RUNNING, attempts=1, failures=0,
                    last_error="", updated_at=now,
                ))
                session.commit()
                return Attempt(RUNNING, 1, "", None)
            except IntegrityError:
                session.rollback()
            counted = session.execute(
                update(_table)
                .where(_key(consumer, event_id), col(_table.c.status).not_in((DONE, DEAD)))
                .values(attempts=_table.c.attempts + 1, status=RUNNING, updated_at=now)
                .returning(_table.c.attempts, _table.c.last_error, _table.c.failures)
            ).first()
            session.commit()
            if counted is not None:
                return Attempt(RUNNING, int(counted[0]), str(counted[1] or ""), None, int(counted[2] or 0))
            row = session.get(ConsumedRow, (consumer, event_id))
            assert row is not None
            return Attempt(row.status, row.attempts, row.last_error, row.outputs, row.failures)

    def _set(self, consumer: str, event_id: str, **values: object) -> None:
        with Session(self.engine) as session:
            session.execute(update(_table).where(_key(consumer, event_id)).values(updated_at=utc_now(), **values))
            session.commit()

    def give_back(self, consumer: str, event_id: str, error: str) -> None:
        """A dependency was down: the attempt does not count."""
        with Session(self.engine) as session:
            session.execute(
                update(_table)
                .where(_key(consumer, event_id), col(_table.c.status) == RUNNING, _table.c.attempts > 0)
                .values(attempts=_table.c.attempts - 1, status=FAILED, last_error=error[:2000], updated_at=utc_now())
            )
            session.commit()

    def fail(self, consumer: str, event_id: str, error: str) -> None:
        """A deterministic failure: the attempt counts as one; the reason is kept for the dead letter."""
        self._set(consumer, event_id, status=FAILED, last_error=error[:2000], failures=_table.c.failures + 1)

    def done(self, consumer: str, event_id: str, outputs: list[dict]) -> None:
        """Handled: keep the events produced, to publish them again on a redelivery."""
        self._set(consumer, event_id, status=DONE, outputs=outputs)

    def dead(self, consumer: str, event_id: str, error: str, session: Session | None = None) -> None:
        """Dead-lettered: a redelivery is ignored until an operator replays it.

        With ``session`` the change joins the caller's transaction (the dead letter's own).
        """
        if session is None:
            self._set(consumer, event_id, status=DEAD, last_error=error[:2000])
            return
        session.execute(update(_table).where(_key(consumer, event_id)).values(status=DEAD, last_error=error[:2000], updated_at=utc_now()))

    def reset(self, consumer: str, event_id: str) -> None:
        """Forget the attempts (an operator replays a dead letter or re-drives a study)."""
        with Session(self.engine) as session:
            session.execute(delete(_table).where(_key(consumer, event_id)))
            session.commit()

    def reset_study(self, hospital_id: str, study_uid: str, consumers: list[str] | None = None) -> int:
        """Forget the failed and dead-lettered attempts of every event of one hospital's study; returns how many."""
        query = delete(_table).where(_table.c.hospital_id == hospital_id, _table.c.study_uid == study_uid,
                                     col(_table.c.status).in_((FAILED, DEAD, RUNNING)))
        if consumers:
            query = query.where(col(_table.c.consumer).in_(consumers))
        with Session(self.engine) as session:
            removed = session.execute(query).rowcount
            session.commit()
        return int(removed or 0)

    def prune(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Drop handled entries not touched for ``older_than`` (redeliveries come within minutes); dead-lettered
        ones stay until an operator replays or discards them."""
        cutoff = (now or utc_now()) - older_than
        with Session(self.engine) as session:
            removed = session.execute(
                delete(_table).where(_table.c.status == DONE, _table.c.updated_at < cutoff)
            ).rowcount
            session.commit()
        return int(removed or 0)

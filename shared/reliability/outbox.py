"""The transactional outbox: an event is written in the same transaction as the state it announces.

``add_events(session, events)`` inserts the events in the caller's transaction; once it commits,
the caller flushes them (publishes and marks them published). Whatever a crash, an outage or a
failed flush leaves unpublished is published by the relay, a periodic task of every service
process: rows past their ``relay_after`` (``FLUSH_GRACE`` after they were written, so that the
writer's own flush has its chance first; at once for what an operator queues) or written before
this process started. So a state change is never announced without being made, nor made without being
announced. A row published twice (a crash between the broker's ack and the mark) is the same
event with the same id, which every consumer drops.

Several replicas relay the same table: on PostgreSQL each takes its rows with
``FOR UPDATE SKIP LOCKED``, so a row goes out once per relay pass across all of them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from shared.db import upsert
from shared.events import DeadLetter, Event, utc_now
from shared.reliability.crashpoints import crash_point
from shared.reliability.tables import OutboxRow
from shared.topics import dead_letter_topic, topic_for

log = logging.getLogger("mdd.outbox")
DEAD_LETTER_TYPE = "dead_letter"
#: How long the relay leaves a row to the flush of the process that wrote it.
FLUSH_GRACE = timedelta(seconds=30)
_table = OutboxRow.__table__  # type: ignore[attr-defined]


class Publisher:
    """What the outbox needs from a bus: send bytes to a topic, from the loop or from a thread."""

    settings: object

    async def publish_raw(self, topic: str, key: str, payload: bytes) -> None: ...

    def publish_raw_from_thread(self, topic: str, key: str, payload: bytes, timeout: float) -> None: ...


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> None:
    session.execute(upsert(session, _table).on_conflict_do_nothing(index_elements=["event_id"]), rows)


def _row(event_id: str, study_uid: str, event_type: str, topic: str, payload: str, at_once: bool) -> dict[str, object]:
    now = utc_now()
    return {"event_id": event_id, "study_uid": study_uid, "event_type": event_type, "topic": topic, "payload": payload,
            "created_at": now, "relay_after": now if at_once else now + FLUSH_GRACE, "published_at": None, "generation": 0}


def add_events(session: Session, events: Iterable[Event], topic: str = "", at_once: bool = False) -> list[str]:
    """Write ``events`` to the outbox in ``session``'s transaction; their ids, to flush after commit.

    ``at_once``: the relay publishes them at its next pass (nobody will flush them: an operator's command).
    """
    rows = [_row(str(event.event_id), event.study_uid, event.event_type, topic, event.model_dump_json(), at_once) for event in events]
    if rows:
        _insert_ignoring_duplicates(session, rows)
    return [str(row["event_id"]) for row in rows]


def record_events(engine: Engine, events: Iterable[Event]) -> list[str]:
    """Write events that announce no other state change (a report taken in) to the outbox, committed; their ids."""
    with Session(engine) as session:
        ids = add_events(session, events)
        session.commit()
    return ids


def requeue_raw(session: Session, event_id: str, study_uid: str, event_type: str, topic: str, payload: str, at_once: bool) -> str:
    """Queue a message to be published again (a re-drive, a replay), even if the outbox published it before."""
    statement = upsert(session, _table).values(**_row(event_id, study_uid, event_type, topic, payload, at_once))
    session.execute(statement.on_conflict_do_update(index_elements=["event_id"], set_={
        "published_at": None, "created_at": statement.excluded.created_at, "relay_after": statement.excluded.relay_after,
        "topic": statement.excluded.topic, "generation": _table.c.generation + 1,
    }))
    return event_id


def requeue_events(session: Session, events: Iterable[Event], at_once: bool = False) -> list[str]:
    """Queue ``events`` to be published again (a re-drive), even if the outbox published them before."""
    return [
        requeue_raw(session, str(e.event_id), e.study_uid, e.event_type, "", e.model_dump_json(), at_once) for e in events
    ]


def add_dead_letter(session: Session, letter: DeadLetter, prefix: str) -> str:
    """Write a dead letter for the ``dlq`` topic to the outbox in ``session``'s transaction; its id."""
    row = _row(str(letter.dead_letter_id), letter.study_uid or "unknown", DEAD_LETTER_TYPE, dead_letter_topic(prefix),
               letter.model_dump_json(), False)
    _insert_ignoring_duplicates(session, [row])
    return str(row["event_id"])


class Outbox:
    """Flushes and relays the outbox of one database through one bus."""

    def __init__(self, engine: Engine, bus: Publisher, topic_prefix: str) -> None:
        self.engine = engine
        self.bus = bus
        self.topic_prefix = topic_prefix
        self.started_at = utc_now()
        self._marks: list[tuple[list[tuple[int, int]], threading.Event]] = []
        self._unmarked: set[tuple[int, int]] = set()  # published, mark not committed yet (queued or being written)
        self._in_flight: set[tuple[int, int]] = set()  # being published by a flush of this process right now
        self._marks_lock = threading.Lock()
        self._marker: threading.Thread | None = None

    def _topic(self, row: OutboxRow) -> str:
        return row.topic or topic_for(row.event_type, self.topic_prefix)

    def _mark(self, session: Session, keys: list[tuple[int, int]]) -> None:
        """Mark rows published, by (id, generation): a row queued again since it was published stays unpublished."""
        if keys:
            session.execute(
                update(_table).where(tuple_(_table.c.id, _table.c.generation).in_(keys)).values(published_at=utc_now())
            )

    async def flush(self, event_ids: Sequence[str]) -> None:
        """Publish these events (those not yet published) and mark them; raises when the broker refuses."""
        if not event_ids:
            return
        rows = await asyncio.to_thread(self._pending, event_ids)
        published: list[tuple[int, int]] = []
        flying = self._take_off(rows)
        try:
            for row in rows:
                await self.bus.publish_raw(self._topic(row), row.study_uid, row.payload.encode())
                crash_point("outbox.published")
                published.append((int(row.id), row.generation))  # type: ignore[arg-type]
        finally:
            if published:
                self._mark_soon(published)
            self._land(flying)

    def flush_from_thread(self, event_ids: Sequence[str], timeout: float) -> None:
        """``flush`` for a thread that is not the event loop's (the DICOM SCP); waits at most ``timeout`` in all."""
        if not event_ids:
            return
        deadline = time.monotonic() + timeout
        published: list[tuple[int, int]] = []
        rows = self._pending(event_ids)
        flying = self._take_off(rows)
        try:
            for row in rows:
                remaining = max(0.1, deadline - time.monotonic())
                self.bus.publish_raw_from_thread(self._topic(row), row.study_uid, row.payload.encode(), remaining)
                crash_point("outbox.published")
                published.append((int(row.id), row.generation))  # type: ignore[arg-type]
        finally:
            marked = self._mark_soon(published) if published else None
            self._land(flying)
        if marked is not None:  # the SCP answers the modality next: a crash after that must not publish these again
            marked.wait(max(0.1, deadline - time.monotonic()))

    def _take_off(self, rows: Sequence[OutboxRow]) -> list[tuple[int, int]]:
        """Note rows this process is publishing, so that its relay leaves them to the flush that has them."""
        keys = [(int(row.id), row.generation) for row in rows]  # type: ignore[arg-type]
        with self._marks_lock:
            self._in_flight.update(keys)
        return keys

    def _land(self, keys: list[tuple[int, int]]) -> None:
        with self._marks_lock:
            self._in_flight.difference_update(keys)

    def _ours(self) -> set[tuple[int, int]]:
        """Rows a flush of this process is publishing, or published and is marking: not the relay's."""
        with self._marks_lock:
            return self._in_flight | self._unmarked

    def _pending(self, event_ids: Sequence[str]) -> list[OutboxRow]:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.execute(
                select(OutboxRow)
                .where(col(OutboxRow.event_id).in_(list(event_ids)), col(OutboxRow.published_at).is_(None))
                .order_by(col(OutboxRow.id))
            ).scalars().all()
            for row in rows:
                session.expunge(row)
        with self._marks_lock:  # published a moment ago, its mark not written yet
            unmarked = set(self._unmarked)
        return [row for row in rows if (row.id, row.generation) not in unmarked]

    def _mark_soon(self, ids: list[tuple[int, int]]) -> threading.Event:
        """Mark rows published with the next group commit; the event is set once their mark is written (or lost).

        Marking is one UPDATE for every flush queued while the previous one was being written, so
        concurrent writers share a commit. A row whose mark a crash lost is published again by the
        relay, as the same event.
        """
        done = threading.Event()
        with self._marks_lock:
            self._marks.append((ids, done))
            self._unmarked.update(ids)
            if self._marker is None or not self._marker.is_alive():
                self._marker = threading.Thread(target=self._mark_pending, name="mdd-outbox-marks", daemon=True)
                self._marker.start()
        return done

    def _mark_pending(self) -> None:
        while True:
            with self._marks_lock:
                queued, self._marks = self._marks, []
                if not queued:
                    self._marker = None
                    return
            ids = [key for keys, _ in queued for key in keys]
            try:
                self._mark_ids(ids)
            except Exception as exc:  # the database is away: the relay publishes these again, as the same events
                log.warning("Marcas de publicación perdidas / publication marks lost (%d): %r", len(ids), exc)
            with self._marks_lock:
                self._unmarked.difference_update(ids)
            for _, done in queued:
                done.set()

    def mark_now(self) -> None:
        """Write the pending marks (a clean stop, tests)."""
        with self._marks_lock:
            queued, self._marks = self._marks, []
        ids = [key for keys, _ in queued for key in keys]
        if ids:
            self._mark_ids(ids)
            with self._marks_lock:
                self._unmarked.difference_update(ids)
        for _, done in queued:
            done.set()

    def _mark_ids(self, ids: list[tuple[int, int]]) -> None:
        with Session(self.engine) as session:
            self._mark(session, ids)
            session.commit()

    def is_published(self, event_ids: Sequence[str]) -> bool:
        """True when every one of these events has been published (or was never in the outbox)."""
        return not self._pending(event_ids)

    async def relay_once(self, batch: int = 200) -> int:
        """Publish what nobody is flushing any more (past its ``relay_after``, or from before this process); how many."""
        return await asyncio.to_thread(self._relay_sync, batch)

    def _relay_sync(self, batch: int) -> int:
        from sqlalchemy import or_

        relayed = 0
        with Session(self.engine) as session:
            query = (
                select(OutboxRow)
                .where(
                    col(OutboxRow.published_at).is_(None),
                    or_(col(OutboxRow.relay_after) <= utc_now(), col(OutboxRow.created_at) < self.started_at),
                )
                .order_by(col(OutboxRow.id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            ours = self._ours()
            rows = [row for row in session.execute(query).scalars().all() if (row.id, row.generation) not in ours]
            published: list[tuple[int, int]] = []
            try:
                for row in rows:
                    self.bus.publish_raw_from_thread(self._topic(row), row.study_uid, row.payload.encode(), 30.0)
                    crash_point("outbox.published")
                    published.append((int(row.id), row.generation))  # type: ignore[arg-type]
            finally:
                self._mark(session, published)
                session.commit()
                relayed = len(published)
        if relayed:
            log.warning("Eventos pendientes publicados por el relevo / outbox relay published %d events", relayed)
        return relayed

    def prune(self, older_than: timedelta = timedelta(days=1), now: datetime | None = None) -> int:
        """Delete published rows older than ``older_than``; how many."""
        cutoff = (now or utc_now()) - older_than
        with Session(self.engine) as session:
            removed = session.execute(
                delete(_table).where(col(_table.c.published_at).is_not(None), _table.c.published_at < cutoff)
            ).rowcount
            session.commit()
        return int(removed or 0)

    def unpublished(self) -> int:
        """How many rows wait to be published (health and tests)."""
        from sqlalchemy import func

        with Session(self.engine) as session:
            return int(session.execute(select(func.count()).select_from(_table).where(_table.c.published_at.is_(None))).scalar_one())

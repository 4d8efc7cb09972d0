"""Status API subscriber: every event updates the study's projection, at most once per event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.events import EVENT_TYPES, Event, InstanceStored, NotificationSent, StudyInferred, StudyPreprocessed, utc_now
from services.status_api.state import fold
from services.status_api.live import publish_change
from services.status_api.metrics import EVENTS_APPLIED
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

log = logging.getLogger("mdd.status_api")
SERVICE = "status_api"
SUBSCRIBED_EVENTS: tuple[type[Event], ...] = tuple(EVENT_TYPES.values())


def project(engine: Engine, event: Event) -> bool:
    """Apply one event to its study; False when this event was already applied."""
    return bool(project_batch(engine, [event]))


def project_batch(engine: Engine, events: Sequence[Event]) -> list[Event]:
    """Apply events in one transaction; returns those not applied before (redeliveries are skipped).

    Each touched study is recomputed from its whole timeline, so any order of arrival, within a
    batch or across batches, gives the same study.
    """
    now = utc_now()
    unique = list({str(event.event_id): event for event in events}.values())
    with Session(engine) as session:
        ids = [str(event.event_id) for event in unique]
        known = set(session.exec(select(StudyEventRow.event_id).where(col(StudyEventRow.event_id).in_(ids))).all())
        fresh = [event for event in unique if str(event.event_id) not in known]
        if not fresh:
            return []
        # Core inserts (no unit of work): a batch holds hundreds of events.
        session.execute(insert(StudyEventRow), [event_row(event, now).model_dump() for event in fresh])
        if notices := [notification_row(event, now).model_dump() for event in fresh if isinstance(event, NotificationSent)]:
            session.execute(insert(NotificationRow), notices)
        # On SQLite the insert took the write lock, so the timelines read below are complete.
        first_of = {event.study_uid: event for event in reversed(fresh)}
        uids = sorted(first_of)
        _insert_missing_studies(session, [first_of[uid] for uid in uids], now)
        # PostgreSQL: one writer per study; locking in study order keeps concurrent batches from deadlocking.
        locked = select(StudyRow).where(col(StudyRow.study_uid).in_(uids)).order_by(col(StudyRow.study_uid)).with_for_update()
        rows = {row.study_uid: row for row in session.exec(locked).all()}
        timelines = timelines_of(session, uids)
        for uid in uids:
            refresh(rows[uid], timelines[uid], now)
            session.add(rows[uid])
        session.commit()
        for uid in uids:
            publish_change(rows[uid])  # live streams (SSE) see the committed change
    for event in fresh:
        EVENTS_APPLIED.labels(event.event_type).inc()
    return fresh


def _insert_missing_studies(session: Session, firsts: list[Event], now: datetime) -> None:
    """Create the rows of studies seen for the first time; a row another writer created wins."""
    uids = [event.study_uid for event in firsts]
    existing = set(session.exec(select(StudyRow.study_uid).where(col(StudyRow.study_uid).in_(uids))).all())
    missing = [
        StudyRow(
            study_uid=event.study_uid, hospital_id=event.hospital_id, correlation_id=event.correlation_id,
            accession_number=event.accession_number, created_at=now, updated_at=now,
        ).model_dump()
        for event in firsts
        if event.study_uid not in existing
    ]
    if not missing:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    session.execute(upsert(StudyRow).on_conflict_do_nothing(index_elements=["study_uid"]), missing)


def refresh(row: StudyRow, events: list[Event], now: datetime) -> None:
    """Recompute a study's row from its timeline (oldest first)."""
    view = fold(events)
    row.progress, row.failed, row.failure_reason, row.overdue = view.progress, view.failed, view.failure_reason, view.overdue
    row.triage_light, row.state, row.status_light = view.triage_light, view.state, view.status_light
    row.accession_number = row.accession_number or next((e.accession_number for e in events if e.accession_number), "")
    row.instance_count = len({e.sop_instance_uid for e in events if isinstance(e, InstanceStored)})
    if preprocessed := [e for e in events if isinstance(e, StudyPreprocessed)]:
        latest = preprocessed[-1]
        row.derived_views = [derived.model_dump(mode="json") for derived in latest.views]
        row.quality_flags = list(latest.quality_flags)
    inferred = next((e for e in events if str(e.event_id) == view.triage_event_id), None)
    if isinstance(inferred, StudyInferred):
        row.breasts = [breast.model_dump(mode="json") for breast in inferred.breasts]
        row.triage_reason = inferred.triage_reason
        row.model_name, row.model_version = inferred.model_name, inferred.model_version
        row.model_trained, row.model_trained_on = inferred.model_trained, inferred.model_trained_on
        row.disclaimer = inferred.disclaimer
    row.updated_at = now


def event_row(event: Event, received_at: datetime) -> StudyEventRow:
    """The timeline's row for an event."""
    return StudyEventRow(
        event_id=str(event.event_id),
        study_uid=event.study_uid,
        event_type=event.event_type,
        producer=f"{event.producer.service} {event.producer.version}",
        occurred_at=event.occurred_at,
        received_at=received_at,
        payload=event.model_dump(mode="json"),
    )


def timelines_of(session: Session, study_uids: list[str]) -> dict[str, list[Event]]:
    """Every recorded event of each study, oldest first (by time, then event id)."""
    found: dict[str, list[Event]] = {uid: [] for uid in study_uids}
    rows = session.exec(select(StudyEventRow.study_uid, StudyEventRow.payload).where(col(StudyEventRow.study_uid).in_(study_uids))).all()
    for study_uid, payload in rows:
        found[study_uid].append(EVENT_TYPES[payload["event_type"]].model_validate(payload))
    for events in found.values():
        events.sort(key=lambda e: (e.occurred_at, str(e.event_id)))
    return found


def timeline(session: Session, study_uid: str) -> list[Event]:
    """Every recorded event of a study, oldest first (by time, then event id)."""
    return timelines_of(session, [study_uid])[study_uid]


def notification_row(event: NotificationSent, received_at: datetime) -> NotificationRow:
    """The notification log's row for a ``notification.sent``."""
    return NotificationRow(
        event_id=str(event.event_id),
        study_uid=event.study_uid,
        hospital_id=event.hospital_id,
        accession_number=event.accession_number,
        rule=event.rule,
        channel=event.channel,
        recipient=event.recipient,
        status=event.status,
        detail=event.detail,
        producer=f"{event.producer.service} {event.producer.version}",
        occurred_at=event.occurred_at,
        received_at=received_at,
    )


class Projector:
    """Async handlers over ``project`` / ``project_batch`` for the bus."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_event(self, event: Event) -> None:
        """Project the event (database work off the event loop)."""
        await self.on_events([event])

    async def on_events(self, events: list[Event]) -> None:
        """Project a batch of events in one transaction (database work off the event loop)."""
        applied = await asyncio.to_thread(project_batch, self.engine, events)
        if applied:
            log.info("Estado actualizado por %d eventos / state updated by %d events", len(applied), len(applied))

"""Status API subscriber: every event updates the study's projection, at most once per event."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared.events import EVENT_TYPES, Event, utc_now, InstanceStored, NotificationSent, StudyInferred, StudyPreprocessed
from services.status_api.state import StudyView, apply_event
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow

log = logging.getLogger("mdd.status_api")
SERVICE = "status_api"
SUBSCRIBED_EVENTS: tuple[type[Event], ...] = tuple(EVENT_TYPES.values())


def project(engine: Engine, event: Event) -> bool:
    """Apply one event to its study; False when this event was already applied."""
    now = utc_now()
    with Session(engine) as session:
        if session.get(StudyEventRow, str(event.event_id)) is not None:
            return False
        session.add(
            StudyEventRow(
                event_id=str(event.event_id),
                study_uid=event.study_uid,
                event_type=event.event_type,
                producer=f"{event.producer.service} {event.producer.version}",
                occurred_at=event.occurred_at,
                received_at=now,
                payload=event.model_dump(mode="json"),
            )
        )
        row = session.get(StudyRow, event.study_uid) or StudyRow(
            study_uid=event.study_uid,
            hospital_id=event.hospital_id,
            correlation_id=event.correlation_id,
            created_at=now,
            updated_at=now,
        )
        before = StudyView(row.progress, row.failed, row.failure_reason, row.overdue, row.triage_light)  # type: ignore[arg-type]
        if isinstance(event, NotificationSent) and before.state in ("failed", "overdue"):
            after = before  # telling IT or the administrator about a problem does not make the study "notified"
        else:
            after = apply_event(before, event)
        row.progress, row.failed, row.failure_reason, row.overdue = after.progress, after.failed, after.failure_reason, after.overdue
        row.triage_light, row.state, row.status_light = after.triage_light, after.state, after.status_light
        row.accession_number = row.accession_number or event.accession_number
        if isinstance(event, InstanceStored):
            session.flush()
            payloads = session.exec(
                select(StudyEventRow.payload).where(
                    StudyEventRow.study_uid == event.study_uid, StudyEventRow.event_type == "instance.stored"
                )
            ).all()
            row.instance_count = len({payload["sop_instance_uid"] for payload in payloads})
        if isinstance(event, StudyPreprocessed):
            row.derived_views = [view.model_dump(mode="json") for view in event.views]
            row.quality_flags = list(event.quality_flags)
        if isinstance(event, NotificationSent):
            session.add(notification_row(event, now))
        if isinstance(event, StudyInferred):
            row.breasts = [breast.model_dump(mode="json") for breast in event.breasts]
            row.triage_reason = event.triage_reason
            row.model_name, row.model_version = event.model_name, event.model_version
            row.model_trained, row.model_trained_on = event.model_trained, event.model_trained_on
            row.disclaimer = event.disclaimer
        row.updated_at = now
        session.add(row)
        session.commit()
    return True


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
    """Async handler over ``project`` for the bus."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_event(self, event: Event) -> None:
        """Project the event (database work off the event loop)."""
        applied = await asyncio.to_thread(project, self.engine, event)
        if applied:
            log.info("Estado actualizado por %s", event.event_type)

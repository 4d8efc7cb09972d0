"""The daily digest: one message per hospital, recipient and day listing the GREEN studies.

GREEN results are recorded from ``study.inferred``. A ``daily_digest`` rule fires at its local
time ``at``; the digest of day D covers the studies inferred from D-1 ``at`` to D ``at`` (local
time of the hospital), so every GREEN study is listed exactly once. Its delivery key holds the
hospital, the day, the rule and the recipient: a restart, or a second process, sends nothing twice,
and a service that was down at ``at`` sends that day's digest when it comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from shared.events import StudyInferred
from shared.settings import Settings
from services.notify.config import ANY_HOSPITAL, Rule, RuleBook
from services.notify.delivery import Deliverer, Delivery, Origin
from services.notify.messages import board_link, study_link
from services.notify.rules import messages_for
from services.notify.tables import GreenStudy

log = logging.getLogger("mdd.notify")
DIGEST_EVENT = "daily_digest"
DIGEST_TOPIC = "notify.daily_digest"
KEEP_DAYS = 7


def record_green(engine: Engine, event: StudyInferred) -> bool:
    """Remember a GREEN study for the digest; False when it is not GREEN or already recorded."""
    if event.triage_light != "GREEN":
        return False
    with Session(engine) as session:
        if session.get(GreenStudy, (event.hospital_id, event.study_uid)) is not None:
            return False
        session.add(
            GreenStudy(
                study_uid=event.study_uid,
                hospital_id=event.hospital_id,
                accession_number=event.accession_number,
                inferred_at=event.occurred_at,
                model_trained=event.model_trained,
                disclaimer=event.disclaimer,
            )
        )
        session.commit()
    return True


def due_day(now: datetime, at: time, zone: ZoneInfo) -> date:
    """The most recent day whose digest time has passed, in the hospital's time zone."""
    local = now.astimezone(zone)
    return local.date() if local.time() >= at else local.date() - timedelta(days=1)


def window(day: date, at: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local moments the digest of ``day`` covers: from the day before at ``at`` to ``day`` at ``at``."""
    return datetime.combine(day - timedelta(days=1), at, zone), datetime.combine(day, at, zone)


def _green_studies(engine: Engine, start: datetime, end: datetime, hospital_id: str | None) -> list[GreenStudy]:
    query = select(GreenStudy).where(
        col(GreenStudy.inferred_at) >= start, col(GreenStudy.inferred_at) < end
    )
    if hospital_id is not None:
        query = query.where(GreenStudy.hospital_id == hospital_id)
    with Session(engine) as session:
        return list(session.exec(query.order_by(col(GreenStudy.inferred_at))).all())


def _forget_old(engine: Engine, now: datetime) -> None:
    with Session(engine) as session:
        session.exec(delete(GreenStudy).where(col(GreenStudy.inferred_at) < now - timedelta(days=KEEP_DAYS)))
        session.commit()


def digest_context(settings: Settings, hospital_id: str, day: date, start: datetime, end: datetime, studies: list[GreenStudy], zone: ZoneInfo) -> dict[str, Any]:
    """What the digest templates may use."""
    disclaimers = list(dict.fromkeys(s.disclaimer for s in studies if s.disclaimer.strip()))
    return {
        "hospital_id": hospital_id,
        "date": day.isoformat(),
        "since": start.strftime("%Y-%m-%d %H:%M"),
        "until": end.strftime("%Y-%m-%d %H:%M"),
        "count": len(studies),
        "studies": [
            {
                "study_uid": s.study_uid,
                "accession": s.accession_number,
                "link": study_link(settings, s.hospital_id, s.study_uid),
                "time": s.inferred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            }
            for s in studies
        ],
        "link": board_link(settings),
        "disclaimers": disclaimers,
        "disclaimer_present": bool(disclaimers),
        "model_trained": all(s.model_trained for s in studies if s.disclaimer.strip()),
    }


class DailyDigest:
    """Sends the digests that are due, once each."""

    def __init__(self, settings: Settings, engine: Engine, book: RuleBook, deliverer: Deliverer) -> None:
        self.settings = settings
        self.engine = engine
        self.book = book
        self.deliverer = deliverer

    def _rules(self) -> list[tuple[str, ZoneInfo, Rule]]:
        return [
            (hospital_id, hospital.timezone, rule)
            for hospital_id, hospital in self.book.hospitals.items()
            for rule in hospital.rules
            if rule.event == DIGEST_EVENT
        ]

    def _deliveries(self, hospital_id: str, zone: ZoneInfo, rule: Rule, now: datetime) -> list[Delivery]:
        assert rule.at is not None
        day = due_day(now, rule.at, zone)
        start, end = window(day, rule.at, zone)
        green = _green_studies(self.engine, start, end, None if hospital_id == ANY_HOSPITAL else hospital_id)
        by_hospital: dict[str, list[GreenStudy]] = {}
        for study in green:
            # ``*`` covers only the hospitals that have no rules of their own.
            if hospital_id != ANY_HOSPITAL or study.hospital_id not in self.book.hospitals:
                by_hospital.setdefault(study.hospital_id, []).append(study)
        deliveries = []
        for hospital, studies in by_hospital.items():
            context = digest_context(self.settings, hospital, day, start, end, studies, zone)
            payload = json.dumps({"digest": DIGEST_EVENT, "hospital_id": hospital, "date": day.isoformat(), "rule": rule.id,
                                  "study_uids": [s.study_uid for s in studies]})
            origin = Origin("", hospital, "", "", DIGEST_TOPIC, payload, kind="digest")
            for recipient in rule.recipients:
                for notification in messages_for(rule, recipient, "digest", context):
                    key = f"digest:{hospital}:{day.isoformat()}:{notification.key_suffix}"
                    deliveries.append(Delivery(key, notification, origin))
        return deliveries

    async def run_due(self, now: datetime | None = None) -> int:
        """Send every digest due at ``now`` that was not sent yet; returns how many deliveries were tried."""
        now = now or datetime.now(timezone.utc)
        deliveries: list[Delivery] = []
        for hospital_id, zone, rule in self._rules():
            deliveries += await asyncio.to_thread(self._deliveries, hospital_id, zone, rule, now)
        await self.deliverer.deliver_all(deliveries)
        await asyncio.to_thread(_forget_old, self.engine, now)
        return len(deliveries)

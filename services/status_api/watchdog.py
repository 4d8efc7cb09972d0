"""The watchdog: studies past a stage's deadline become overdue, and stuck studies are re-driven.

Every ``MDD_WATCHDOG_INTERVAL_SECONDS`` it looks at the studies still on their way to results.
A study waits in a stage from the moment the status API recorded the stage's input event (the
last ``instance.stored``, ``study.completed`` or ``study.preprocessed``). Past the stage's deadline:

- ``study.overdue`` is published once per (study, stage). Its event id is fixed by the study and
  the stage, so a second publication (a crash before it was recorded, two status API instances)
  is the same event for every consumer: the projection and notify de-duplicate it.
- a study stuck after ``study.completed`` or ``study.preprocessed`` is re-driven: the stage's input
  event, as recorded in the timeline (``status_event``), is published again so that the next stage
  handles it again (consumers are idempotent). At most ``MDD_WATCHDOG_REDRIVE_ATTEMPTS`` times, one
  deadline apart; each attempt is claimed in ``status_watchdog`` before it is published.

With the in-process bus (embedded mode) nothing survives a restart: an input event recorded before
this process started whose stage has not answered is lost, so it is re-driven at the first sweep.
Failed studies are left alone: their stage gave up and dead-lettered the event for a person.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import NAMESPACE_URL, UUID, uuid5

from sqlalchemy import and_, func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from shared.db import init_db
from shared.events import EVENT_TYPES, Event, StudyOverdue, producer, utc_now
from shared.runtime import ServiceContext
from shared.settings import Settings
from services.status_api.tables import StudyEventRow, StudyRow

log = logging.getLogger("mdd.status_api.watchdog")
SERVICE = "status_api"


class WatchdogRow(SQLModel, table=True):
    """What the watchdog did for one study in one stage: its overdue notice and its re-drives."""

    __tablename__ = "status_watchdog"

    study_uid: str = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    overdue_published_at: datetime | None = None
    redrives: int = 0
    redriven_at: datetime | None = None


@dataclass(frozen=True)
class Stage:
    """A wait between two events of the pipeline."""

    name: str
    progress: str
    input_event: str
    redrive: bool

    def deadline(self, settings: Settings) -> float:
        """Seconds a study may wait in this stage."""
        if self.name == "ingest":
            return settings.study_quiet_seconds + settings.watchdog_ingest_margin_seconds
        if self.name == "preprocess":
            return settings.watchdog_preprocess_seconds
        return settings.watchdog_infer_seconds


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "receiving", "instance.stored", redrive=False),  # ingest completes studies from its own database
    Stage("preprocess", "completed", "study.completed", redrive=True),
    Stage("infer", "preprocessed", "study.preprocessed", redrive=True),
)
_STAGE_OF_PROGRESS = {stage.progress: stage for stage in STAGES}


@dataclass(frozen=True)
class Waiting:
    """A study waiting in a stage since its input event was recorded."""

    study_uid: str
    hospital_id: str
    correlation_id: str
    accession_number: str
    stage: Stage
    since: datetime
    input_payload: dict


@dataclass(frozen=True)
class Decision:
    """What the watchdog does for one waiting study in this sweep."""

    overdue: bool
    redrive: bool


def aware(moment: datetime) -> datetime:
    """A UTC datetime (SQLite returns naive ones)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def decide(
    waiting: Waiting, record: WatchdogRow, settings: Settings, now: datetime, started_at: datetime
) -> Decision:
    """Pure rule: overdue once past the deadline; re-drive one deadline after the last try, or at once
    when the input event was recorded before this process started and the bus is in-process."""
    deadline = timedelta(seconds=waiting.stage.deadline(settings))
    since = aware(waiting.since)
    overdue = now - since >= deadline and record.overdue_published_at is None
    if not waiting.stage.redrive or record.redrives >= settings.watchdog_redrive_attempts:
        return Decision(overdue, False)
    redriven_at = aware(record.redriven_at) if record.redriven_at else None
    last_try = max(since, redriven_at) if redriven_at else since
    lost_in_restart = (
        settings.transport == "memory" and since < started_at and (redriven_at is None or redriven_at < started_at)
    )
    return Decision(overdue, now - last_try >= deadline or lost_in_restart)


def overdue_event_id(study_uid: str, stage: str) -> UUID:
    """The one id of a study's ``study.overdue`` for a stage."""
    return uuid5(NAMESPACE_URL, f"mdd-watchdog:{study_uid}:{stage}")


def waiting_studies(engine: Engine) -> list[Waiting]:
    """Studies on their way to results, not failed, with the stage they wait in and its latest input event.

    One query for all of them (a study with no recorded input event cannot be judged and is left out).
    """
    waits_for_input = or_(*[
        and_(col(StudyRow.progress) == stage.progress, col(StudyEventRow.event_type) == stage.input_event) for stage in STAGES
    ])
    query = (
        select(StudyRow.study_uid, StudyRow.hospital_id, StudyRow.correlation_id, StudyRow.accession_number,
               StudyRow.progress, StudyEventRow.received_at, StudyEventRow.payload)
        .join(StudyEventRow, col(StudyEventRow.study_uid) == col(StudyRow.study_uid))
        .where(col(StudyRow.failed).is_(False), waits_for_input)
        .order_by(col(StudyEventRow.received_at))
    )
    latest: dict[str, Waiting] = {}
    with Session(engine) as session:
        for uid, hospital, correlation, accession, progress, received_at, payload in session.exec(query):
            latest[uid] = Waiting(uid, hospital, correlation, accession, _STAGE_OF_PROGRESS[progress], received_at, payload)
    return list(latest.values())


def known_records(engine: Engine, waiting: list[Waiting], chunk: int = 500) -> dict[tuple[str, str], WatchdogRow]:
    """The watchdog rows already kept for these waiting studies, by (study, stage)."""
    records: dict[tuple[str, str], WatchdogRow] = {}
    with Session(engine) as session:
        for start in range(0, len(waiting), chunk):
            uids = [item.study_uid for item in waiting[start:start + chunk]]
            for record in session.exec(select(WatchdogRow).where(col(WatchdogRow.study_uid).in_(uids))):
                session.expunge(record)
                records[(record.study_uid, record.stage)] = record
    return records


def record_for(engine: Engine, study_uid: str, stage: str) -> WatchdogRow:
    """The watchdog's row for (study, stage), created when missing (by whichever instance comes first)."""
    with Session(engine) as session:
        record = session.get(WatchdogRow, (study_uid, stage))
        if record is None:
            session.add(WatchdogRow(study_uid=study_uid, stage=stage))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
            record = session.get(WatchdogRow, (study_uid, stage))
        assert record is not None
        session.expunge(record)
        return record


def claim_redrive(engine: Engine, record: WatchdogRow, now: datetime) -> bool:
    """Count one re-drive; False when another instance counted it first."""
    with Session(engine) as session:
        result = session.exec(  # type: ignore[call-overload]
            update(WatchdogRow)
            .where(
                col(WatchdogRow.study_uid) == record.study_uid,
                col(WatchdogRow.stage) == record.stage,
                col(WatchdogRow.redrives) == record.redrives,
            )
            .values(redrives=WatchdogRow.redrives + 1, redriven_at=now)
        )
        session.commit()
        return bool(result.rowcount == 1)


def mark_overdue_published(engine: Engine, record: WatchdogRow, now: datetime) -> None:
    """Remember that the overdue notice went out (the first instance to record it wins)."""
    with Session(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(WatchdogRow)
            .where(col(WatchdogRow.study_uid) == record.study_uid, col(WatchdogRow.stage) == record.stage)
            .values(overdue_published_at=func.coalesce(WatchdogRow.overdue_published_at, now))
        )
        session.commit()


@dataclass
class SweepReport:
    """What one sweep did: (study, stage) pairs made overdue and re-driven."""

    overdue: list[tuple[str, str]]
    redriven: list[tuple[str, str]]


class Watchdog:
    """Periodic sweep over waiting studies; a component of the status API service."""

    def __init__(self, ctx: ServiceContext, started_at: datetime | None = None) -> None:
        init_db(ctx.engine, [WatchdogRow])
        self.ctx = ctx
        self.started_at = started_at or utc_now()
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """Publish what is due for every waiting study."""
        now = now or utc_now()
        engine, settings = self.ctx.engine, self.ctx.settings
        report = SweepReport([], [])
        waiting_now = await asyncio.to_thread(waiting_studies, engine)
        records = await asyncio.to_thread(known_records, engine, waiting_now)
        for waiting in waiting_now:
            stage = waiting.stage.name
            record = records.get((waiting.study_uid, stage)) or WatchdogRow(study_uid=waiting.study_uid, stage=stage)
            decision = decide(waiting, record, settings, now, self.started_at)
            if not (decision.redrive or decision.overdue):
                continue
            if (waiting.study_uid, stage) not in records:  # kept only once there is something to do
                record = await asyncio.to_thread(record_for, engine, waiting.study_uid, stage)
                decision = decide(waiting, record, settings, now, self.started_at)
            if decision.redrive and await asyncio.to_thread(claim_redrive, engine, record, now):
                event = EVENT_TYPES[waiting.input_payload["event_type"]].model_validate(waiting.input_payload)
                await self.ctx.bus.publish(event)
                log.warning(
                    "Estudio atascado en %s: reenviado %s (intento %d) / stuck study re-driven",
                    stage, event.event_type, record.redrives + 1,
                )
                report.redriven.append((waiting.study_uid, stage))
            if decision.overdue:
                await self.ctx.bus.publish(self._overdue(waiting))
                await asyncio.to_thread(mark_overdue_published, engine, record, now)
                log.warning("Estudio retrasado en %s / study overdue", stage)
                report.overdue.append((waiting.study_uid, stage))
        return report

    def _overdue(self, waiting: Waiting) -> Event:
        return StudyOverdue(
            event_id=overdue_event_id(waiting.study_uid, waiting.stage.name),
            study_uid=waiting.study_uid,
            hospital_id=waiting.hospital_id,
            correlation_id=waiting.correlation_id,
            accession_number=waiting.accession_number,
            producer=producer(SERVICE),
            stage=waiting.stage.name,
            deadline_seconds=waiting.stage.deadline(self.ctx.settings),
        )

    async def run(self) -> None:
        """Sweep now and then every interval; an error is logged and the next sweep tries again."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("Falla del vigilante; se reintenta / watchdog sweep failed; retrying")
            await asyncio.sleep(self.ctx.settings.watchdog_interval_seconds)

    async def start(self) -> None:
        """Start sweeping in the background."""
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

"""The watchdog: studies past a stage's deadline become overdue, stuck studies are re-driven, IT is told.

Every ``MDD_WATCHDOG_INTERVAL_SECONDS`` the replica holding the ``status_api.watchdog`` lease looks at
the studies still on their way to results — and at RED results still on their way to their people.
A study waits in a stage from the moment the status API recorded the stage's input event (the last
``instance.stored``, ``study.completed``, ``study.preprocessed`` or, for RED results,
``study.inferred``). Past the stage's deadline:

- ``study.overdue`` is published once per (study, stage), through the outbox, in the transaction that
  records it. Its event id is fixed by the study and the stage, so a second publication is the same
  event for every consumer: the projection and notify de-duplicate it.
- a study stuck after ``study.completed``, ``study.preprocessed`` or a RED ``study.inferred`` is
  re-driven: the stage's input event, as recorded in the timeline, is queued again in the outbox so
  that the next stage sees it again (consumers are idempotent: one that had handled it publishes
  its results again). At most ``MDD_WATCHDOG_REDRIVE_ATTEMPTS`` times, one deadline apart.
- a RED result still not notified twice ``MDD_ALERT_DEADLINE_SECONDS`` after it was recorded is
  announced to IT on their own channel (``MDD_IT_ALERT_CHANNELS``), once: the notify service, or
  every channel it uses, may be what is broken.

Failed studies are left alone: their stage gave up and dead-lettered the event for a person
(``mdd dlq``, ``mdd studies redrive``).
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
from shared.it_alerts import NoItChannel, send_it_alert
from shared.reliability.lease import LeaderLease
from shared.reliability.outbox import add_events, requeue_events
from shared.reliability.periodic import PeriodicTask
from shared.runtime import ServiceContext
from shared.settings import Settings
from services.status_api.tables import StudyEventRow, StudyRow

log = logging.getLogger("mdd.status_api.watchdog")
SERVICE = "status_api"
LEASE_NAME = "status_api.watchdog"


class WatchdogRow(SQLModel, table=True):
    """What the watchdog did for one study in one stage: its overdue notice and its re-drives."""

    __tablename__ = "status_watchdog"

    hospital_id: str = Field(primary_key=True)
    study_uid: str = Field(primary_key=True)
    stage: str = Field(primary_key=True)
    overdue_published_at: datetime | None = None
    redrives: int = 0
    redriven_at: datetime | None = None
    it_alerted_at: datetime | None = None


@dataclass(frozen=True)
class Stage:
    """A wait between two events of the pipeline."""

    name: str
    progress: str
    input_event: str
    redrive: bool
    only_light: str | None = None
    alerts_it: bool = False

    def deadline(self, settings: Settings) -> float:
        """Seconds a study may wait in this stage."""
        if self.name == "ingest":
            return settings.study_quiet_seconds + settings.watchdog_ingest_margin_seconds
        if self.name == "preprocess":
            return settings.watchdog_preprocess_seconds
        if self.name == "notify":
            return settings.alert_deadline_seconds
        return settings.watchdog_infer_seconds


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "receiving", "instance.stored", redrive=False),  # ingest's outbox and quiet scan complete studies
    Stage("preprocess", "completed", "study.completed", redrive=True),
    Stage("infer", "preprocessed", "study.preprocessed", redrive=True),
    # A RED result waits for its people: notify's rules send RED results at once.
    Stage("notify", "ready", "study.inferred", redrive=True, only_light="RED", alerts_it=True),
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
    alert_it: bool = False


def aware(moment: datetime) -> datetime:
    """A UTC datetime (SQLite returns naive ones)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def decide(waiting: Waiting, record: WatchdogRow, settings: Settings, now: datetime) -> Decision:
    """Pure rule: overdue once past the deadline; re-drive one deadline after the last try, within the
    limit; tell IT once at twice the deadline, where the stage does."""
    deadline = timedelta(seconds=waiting.stage.deadline(settings))
    since = aware(waiting.since)
    overdue = now - since >= deadline and record.overdue_published_at is None
    alert_it = waiting.stage.alerts_it and record.it_alerted_at is None and now - since >= 2 * deadline
    if not waiting.stage.redrive or record.redrives >= settings.watchdog_redrive_attempts:
        return Decision(overdue, False, alert_it)
    redriven_at = aware(record.redriven_at) if record.redriven_at else None
    last_try = max(since, redriven_at) if redriven_at else since
    return Decision(overdue, now - last_try >= deadline, alert_it)


def overdue_event_id(hospital_id: str, study_uid: str, stage: str) -> UUID:
    """The one id of a study's ``study.overdue`` for a stage."""
    return uuid5(NAMESPACE_URL, f"mdd-watchdog:{hospital_id}:{study_uid}:{stage}")


def waiting_studies(engine: Engine) -> list[Waiting]:
    """Studies on their way to results, not failed, with the stage they wait in and its latest input event.

    One query for all of them (a study with no recorded input event cannot be judged and is left out).
    """
    waits_for_input = or_(*[
        and_(
            col(StudyRow.progress) == stage.progress, col(StudyEventRow.event_type) == stage.input_event,
            *([col(StudyRow.triage_light) == stage.only_light] if stage.only_light else []),
        )
        for stage in STAGES
    ])
    query = (
        select(StudyRow.study_uid, StudyRow.hospital_id, StudyRow.correlation_id, StudyRow.accession_number,
               StudyRow.progress, StudyEventRow.received_at, StudyEventRow.payload)
        .join(StudyEventRow, and_(col(StudyEventRow.hospital_id) == col(StudyRow.hospital_id),
                                  col(StudyEventRow.study_uid) == col(StudyRow.study_uid)))
        .where(col(StudyRow.failed).is_(False), waits_for_input)
        .order_by(col(StudyEventRow.received_at))
    )
    latest: dict[tuple[str, str], Waiting] = {}
    with Session(engine) as session:
        for uid, hospital, correlation, accession, progress, received_at, payload in session.exec(query):
            latest[(hospital, uid)] = Waiting(uid, hospital, correlation, accession, _STAGE_OF_PROGRESS[progress], received_at, payload)
    return list(latest.values())


def known_records(engine: Engine, waiting: list[Waiting], chunk: int = 500) -> dict[tuple[str, str, str], WatchdogRow]:
    """The watchdog rows already kept for these waiting studies, by (hospital, study, stage)."""
    records: dict[tuple[str, str, str], WatchdogRow] = {}
    with Session(engine) as session:
        for start in range(0, len(waiting), chunk):
            uids = [item.study_uid for item in waiting[start:start + chunk]]
            for record in session.exec(select(WatchdogRow).where(col(WatchdogRow.study_uid).in_(uids))):
                session.expunge(record)
                records[(record.hospital_id, record.study_uid, record.stage)] = record
    return records


def record_for(engine: Engine, hospital_id: str, study_uid: str, stage: str) -> WatchdogRow:
    """The watchdog's row for (hospital, study, stage), created when missing (by whichever instance comes first)."""
    with Session(engine) as session:
        record = session.get(WatchdogRow, (hospital_id, study_uid, stage))
        if record is None:
            session.add(WatchdogRow(hospital_id=hospital_id, study_uid=study_uid, stage=stage))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
            record = session.get(WatchdogRow, (hospital_id, study_uid, stage))
        assert record is not None
        session.expunge(record)
        return record


def claim_redrive(engine: Engine, record: WatchdogRow, now: datetime, event: Event) -> list[str]:
    """Count one re-drive and queue the stage's input event again, in one transaction; the outbox ids
    to flush (none when another instance counted it first)."""
    with Session(engine) as session:
        result = session.exec(  # type: ignore[call-overload]
            update(WatchdogRow)
            .where(
                col(WatchdogRow.hospital_id) == record.hospital_id,
                col(WatchdogRow.study_uid) == record.study_uid,
                col(WatchdogRow.stage) == record.stage,
                col(WatchdogRow.redrives) == record.redrives,
            )
            .values(redrives=WatchdogRow.redrives + 1, redriven_at=now)
        )
        if result.rowcount != 1:
            session.rollback()
            return []
        ids = requeue_events(session, [event])
        session.commit()
        return ids


def mark_overdue_published(engine: Engine, record: WatchdogRow, now: datetime, event: Event) -> list[str]:
    """Record the overdue notice (the first instance to record it wins) with its event, in one transaction."""
    with Session(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(WatchdogRow)
            .where(col(WatchdogRow.hospital_id) == record.hospital_id, col(WatchdogRow.study_uid) == record.study_uid,
                   col(WatchdogRow.stage) == record.stage)
            .values(overdue_published_at=func.coalesce(WatchdogRow.overdue_published_at, now))
        )
        ids = add_events(session, [event])
        session.commit()
        return ids


def mark_it_alerted(engine: Engine, record: WatchdogRow, now: datetime) -> None:
    """Remember that IT was told about this study and stage."""
    with Session(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(WatchdogRow)
            .where(col(WatchdogRow.hospital_id) == record.hospital_id, col(WatchdogRow.study_uid) == record.study_uid,
                   col(WatchdogRow.stage) == record.stage)
            .values(it_alerted_at=func.coalesce(WatchdogRow.it_alerted_at, now))
        )
        session.commit()


@dataclass
class SweepReport:
    """What one sweep did: (study, stage) pairs made overdue, re-driven and reported to IT."""

    overdue: list[tuple[str, str]]
    redriven: list[tuple[str, str]]
    it_alerted: list[tuple[str, str]]


class Watchdog:
    """Periodic sweep over waiting studies, on the lease holder; a component of the status API service."""

    def __init__(self, ctx: ServiceContext) -> None:
        init_db(ctx.engine, [WatchdogRow])
        self.ctx = ctx
        self.task = PeriodicTask(
            LEASE_NAME, self.sweep, ctx.settings.watchdog_interval_seconds,
            lease=LeaderLease(ctx.engine, LEASE_NAME, ttl_seconds=max(30.0, 3 * ctx.settings.watchdog_interval_seconds)),
        )

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """Publish what is due for every waiting study."""
        now = now or utc_now()
        engine, settings = self.ctx.engine, self.ctx.settings
        report = SweepReport([], [], [])
        waiting_now = await asyncio.to_thread(waiting_studies, engine)
        records = await asyncio.to_thread(known_records, engine, waiting_now)
        for waiting in waiting_now:
            stage = waiting.stage.name
            key = (waiting.hospital_id, waiting.study_uid, stage)
            record = records.get(key) or WatchdogRow(hospital_id=waiting.hospital_id, study_uid=waiting.study_uid, stage=stage)
            decision = decide(waiting, record, settings, now)
            if not (decision.redrive or decision.overdue or decision.alert_it):
                continue
            if key not in records:  # kept only once there is something to do
                record = await asyncio.to_thread(record_for, engine, waiting.hospital_id, waiting.study_uid, stage)
                decision = decide(waiting, record, settings, now)
            if decision.overdue:
                ids = await asyncio.to_thread(mark_overdue_published, engine, record, now, self._overdue(waiting))
                await self.ctx.bus.outbox.flush(ids)
                log.warning("Estudio retrasado en %s / study overdue", stage)
                report.overdue.append((waiting.study_uid, stage))
            if decision.redrive:
                event = EVENT_TYPES[waiting.input_payload["event_type"]].model_validate(waiting.input_payload)
                if ids := await asyncio.to_thread(claim_redrive, engine, record, now, event):
                    await self.ctx.bus.outbox.flush(ids)
                    log.warning(
                        "Estudio atascado en %s: reenviado %s (intento %d) / stuck study re-driven",
                        stage, event.event_type, record.redrives + 1,
                    )
                    report.redriven.append((waiting.study_uid, stage))
            if decision.alert_it and await self._alert_it(waiting, record, now):
                report.it_alerted.append((waiting.study_uid, stage))
        return report

    async def _alert_it(self, waiting: Waiting, record: WatchdogRow, now: datetime) -> bool:
        """Tell IT that a RED result has not reached its people; True once it is told (or cannot be)."""
        minutes = (now - aware(waiting.since)).total_seconds() / 60
        subject = f"[MDD] ROJO sin notificar / RED not notified: {waiting.accession_number or waiting.study_uid}"
        body = (
            f"Un resultado ROJO lleva {minutes:.0f} min sin llegar a sus destinatarios. Revise el servicio de notificación "
            f"y sus canales (correo, SMS) y avise por otra vía a radiología.\n"
            f"A RED result has not reached its people for {minutes:.0f} min. Check the notify service and its channels "
            f"(e-mail, SMS) and tell radiology another way.\n\n"
            f"Hospital: {waiting.hospital_id}  Estudio / study: {waiting.study_uid}  Acceso / accession: {waiting.accession_number or '-'}\n"
            f"Modelo de demostración con datos sintéticos; no es un dispositivo clínico / synthetic-data demonstration model, "
            f"not a clinical device."
        )
        try:
            await asyncio.to_thread(send_it_alert, self.ctx.settings, f"{waiting.hospital_id}:{waiting.study_uid}:{waiting.stage.name}", subject, body)
        except NoItChannel:
            log.error("ROJO sin notificar y sin canal de TI (MDD_IT_ALERT_CHANNELS) / RED not notified, no IT channel: %s",
                      waiting.study_uid)
        except Exception as exc:  # every IT channel failed: the next sweep tries again
            log.error("Alerta a TI no enviada; se reintentará / IT alert not sent, will retry: %r", exc)
            return False
        else:
            log.error("ROJO sin notificar: TI avisada / RED not notified: IT alerted: %s", waiting.study_uid)
        await asyncio.to_thread(mark_it_alerted, self.ctx.engine, record, now)
        return True

    def _overdue(self, waiting: Waiting) -> Event:
        return StudyOverdue(
            event_id=overdue_event_id(waiting.hospital_id, waiting.study_uid, waiting.stage.name),
            study_uid=waiting.study_uid,
            hospital_id=waiting.hospital_id,
            correlation_id=waiting.correlation_id,
            accession_number=waiting.accession_number,
            producer=producer(SERVICE),
            stage=waiting.stage.name,
            deadline_seconds=waiting.stage.deadline(self.ctx.settings),
        )

    async def start(self) -> None:
        """Start sweeping in the background (on the replica that holds the lease)."""
        await self.task.start()

    async def stop(self) -> None:
        """Stop sweeping and give the lease up."""
        await self.task.stop()

"""What IT does when something was given up on: ``mdd dlq list|show|replay|discard`` and ``mdd studies redrive``.

The commands need only the database: a replay or a re-drive queues the message in the outbox,
and the running services' outbox relay publishes it within a second (whether the system runs
embedded or distributed). Before that, the consumer ledger forgets the attempts of the consumer
that gave up, so it handles the message afresh. Every command is written to the audit log
(``auth_audit``) with the operator's name.
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.db import init_db, make_engine
from shared.events import EVENT_TYPES, utc_now
from shared.reliability.consumed import ConsumerLedger
from shared.reliability.outbox import requeue_events, requeue_raw
from shared.reliability.tables import RELIABILITY_TABLES, DeadLetterRow
from shared.settings import Settings
from services.status_api.auth_tables import AuditRow
from services.status_api.tables import StudyEventRow, StudyRow
from services.status_api.watchdog import STAGES

commands = typer.Typer(no_args_is_help=True)
dlq = typer.Typer(help="Mensajes abandonados (cola de mensajes muertos) / dead-lettered messages.", no_args_is_help=True)
studies = typer.Typer(help="Estudios: reenviar por el flujo / studies: drive them through the pipeline again.", no_args_is_help=True)
commands.add_typer(dlq, name="dlq")
commands.add_typer(studies, name="studies")
console = Console()

OperatorOption = Annotated[str, typer.Option("--by", help="Quién lo hace (bitácora) / who does it (audit log)")]
#: The stage a study waits in, by its progress, and the event that feeds that stage.
_INPUT_OF_PROGRESS = {stage.progress: stage.input_event for stage in STAGES if stage.redrive}


class OperationError(RuntimeError):
    """A command that cannot be done, with the reason in Spanish and English."""


def _engine() -> Engine:
    engine = make_engine(Settings().resolved_database_url)
    init_db(engine, [*RELIABILITY_TABLES, AuditRow])
    return engine


def _audit(session: Session, operator: str, action: str, study_uid: str | None, detail: str, hospital_id: str | None = None) -> None:
    session.add(AuditRow(at=utc_now(), principal=f"operador:{operator}", role="operator", action=action,
                         study_uid=study_uid, hospital_id=hospital_id, client="cli", detail=detail[:500]))


def find_study(session: Session, study_uid: str, hospital_id: str | None = None) -> StudyRow:
    """The study ``study_uid`` (of ``hospital_id`` when given); an error names the hospitals when the UID
    is ambiguous, since two hospitals may send the same UID."""
    query = select(StudyRow).where(StudyRow.study_uid == study_uid)
    if hospital_id:
        query = query.where(StudyRow.hospital_id == hospital_id)
    matches = session.exec(query).all()
    if not matches:
        raise OperationError(f"Estudio desconocido / unknown study {study_uid!r}")
    if len(matches) > 1:
        hospitals = ", ".join(sorted(row.hospital_id for row in matches))
        raise OperationError(
            f"El UID {study_uid!r} existe en varios hospitales ({hospitals}); indique --hospital /"
            f" the UID exists in several hospitals: give --hospital"
        )
    return matches[0]


def find_dead_letter(session: Session, letter_id: str) -> DeadLetterRow:
    """A dead letter by its id or an unambiguous prefix of it."""
    matches = session.exec(select(DeadLetterRow).where(col(DeadLetterRow.dead_letter_id).startswith(letter_id))).all()
    if not matches:
        raise OperationError(f"No existe la carta muerta / no dead letter {letter_id!r}")
    if len(matches) > 1:
        raise OperationError(f"Prefijo ambiguo / ambiguous prefix {letter_id!r}: {len(matches)} cartas / letters")
    return matches[0]


def dead_letters(
    engine: Engine, status: str | None = "open", study_uid: str | None = None, hospital_id: str | None = None
) -> list[DeadLetterRow]:
    """Dead letters, newest first, by status (``None``: all), study and hospital."""
    query = select(DeadLetterRow).order_by(col(DeadLetterRow.created_at).desc())
    if status:
        query = query.where(DeadLetterRow.status == status)
    if study_uid:
        query = query.where(DeadLetterRow.study_uid == study_uid)
    if hospital_id:
        query = query.where(DeadLetterRow.hospital_id == hospital_id)
    with Session(engine) as session:
        return list(session.exec(query).all())


def replay(engine: Engine, letter_id: str, operator: str) -> DeadLetterRow:
    """Give a dead letter back to its consumer: its attempts are forgotten and the message is queued again."""
    with Session(engine) as session:
        letter = find_dead_letter(session, letter_id)
        if letter.status != "open":
            raise OperationError(f"La carta ya está {letter.status} / the letter is already {letter.status}")
        if letter.event_id is None:
            raise OperationError("El mensaje no es un evento legible; solo puede descartarse / not a readable event; discard it")
        payload = json.loads(letter.payload)
        ConsumerLedger(engine).reset(letter.consumer, letter.event_id)
        requeue_raw(session, letter.event_id, letter.study_uid or "unknown", payload["event_type"], letter.source_topic,
                    letter.payload, at_once=True)
        letter.status, letter.resolved_at, letter.resolved_by, letter.resolution = "replayed", utc_now(), operator, "replay"
        session.add(letter)
        _audit(session, operator, "dlq.replay", letter.study_uid, f"{letter.dead_letter_id} {letter.consumer}", letter.hospital_id)
        session.commit()
        session.refresh(letter)
        return letter


def discard(engine: Engine, letter_id: str, operator: str, reason: str) -> DeadLetterRow:
    """Close a dead letter without replaying it (the reason is kept)."""
    with Session(engine) as session:
        letter = find_dead_letter(session, letter_id)
        if letter.status != "open":
            raise OperationError(f"La carta ya está {letter.status} / the letter is already {letter.status}")
        letter.status, letter.resolved_at, letter.resolved_by, letter.resolution = "discarded", utc_now(), operator, reason
        session.add(letter)
        _audit(session, operator, "dlq.discard", letter.study_uid, f"{letter.dead_letter_id}: {reason}", letter.hospital_id)
        session.commit()
        session.refresh(letter)
        return letter


def redrive_study(engine: Engine, study_uid: str, operator: str, hospital_id: str | None = None) -> str:
    """Drive a study again from the stage it stopped in; the event queued again (its type).

    The failed or dead-lettered attempts of its events are forgotten and its open dead letters
    closed as replayed, so that the stage handles the study afresh.
    """
    with Session(engine) as session:
        study = find_study(session, study_uid, hospital_id)
        wanted = _INPUT_OF_PROGRESS.get(study.progress)
        if wanted is None:
            raise OperationError(
                f"El estudio está en {study.progress!r}: nada que reenviar / the study is at {study.progress!r}: nothing to re-drive"
            )
        rows = session.exec(
            select(StudyEventRow).where(StudyEventRow.hospital_id == study.hospital_id, StudyEventRow.study_uid == study_uid,
                                        StudyEventRow.event_type == wanted)
            .order_by(col(StudyEventRow.received_at).desc())
        ).all()
        if not rows:
            raise OperationError(f"Sin evento {wanted} en la cronología / no {wanted} in the timeline")
        event = EVENT_TYPES[wanted].model_validate(rows[0].payload)
        ConsumerLedger(engine).reset_study(study.hospital_id, study_uid)
        requeue_events(session, [event], at_once=True)
        session.execute(
            update(DeadLetterRow).where(col(DeadLetterRow.hospital_id) == study.hospital_id, col(DeadLetterRow.study_uid) == study_uid,
                                        col(DeadLetterRow.status) == "open")
            .values(status="replayed", resolved_at=utc_now(), resolved_by=operator, resolution="studies redrive")
        )
        _audit(session, operator, "study.redrive", study_uid, f"{wanted} {event.event_id}", study.hospital_id)
        session.commit()
        return wanted


def _fail(exc: OperationError) -> typer.Exit:
    console.print(f"[red]{exc}[/]")
    return typer.Exit(2)


@dlq.command("list")
def dlq_list(
    status: Annotated[str, typer.Option(help="open, replayed, discarded o all / or all")] = "open",
    study: Annotated[Optional[str], typer.Option(help="Solo de este estudio / only this study")] = None,
    hospital: Annotated[Optional[str], typer.Option(help="Solo de este hospital / only this hospital's")] = None,
) -> None:
    """Lista las cartas muertas / list dead letters."""
    rows = dead_letters(_engine(), None if status == "all" else status, study, hospital)
    # One line per letter, whole (a narrow terminal wraps rather than cuts), easy to grep.
    print("id\tfecha / at\testado / status\tconsumidor / consumer\thospital\testudio / study\tintentos / attempts\terror")
    for row in rows:
        print("\t".join([row.dead_letter_id[:8], row.created_at.strftime("%Y-%m-%d %H:%M:%S"), row.status, row.consumer,
                         row.hospital_id or "-", row.study_uid or "-", str(row.attempts), row.error[:200]]))
    console.print(f"{len(rows)} carta(s) / letter(s)")


@dlq.command("show")
def dlq_show(letter_id: str) -> None:
    """Muestra una carta muerta completa (con su mensaje) / show one dead letter with its message."""
    with Session(_engine()) as session:
        try:
            letter = find_dead_letter(session, letter_id)
        except OperationError as exc:
            raise _fail(exc) from exc
        print(json.dumps(letter.model_dump(mode="json"), ensure_ascii=False, indent=2))


@dlq.command("replay")
def dlq_replay(letter_id: str, by: OperatorOption = "") -> None:
    """Devuelve el mensaje a su consumidor / give the message back to its consumer."""
    try:
        letter = replay(_engine(), letter_id, by or getpass.getuser())
    except OperationError as exc:
        raise _fail(exc) from exc
    console.print(f"Reenviado a {letter.consumer} / replayed to {letter.consumer}: {letter.dead_letter_id}")


@dlq.command("discard")
def dlq_discard(
    letter_id: str,
    reason: Annotated[str, typer.Option(help="Por qué se descarta (obligatorio) / why (required)")],
    by: OperatorOption = "",
) -> None:
    """Cierra una carta muerta sin reenviarla / close a dead letter without replaying it."""
    try:
        letter = discard(_engine(), letter_id, by or getpass.getuser(), reason)
    except OperationError as exc:
        raise _fail(exc) from exc
    console.print(f"Descartada / discarded: {letter.dead_letter_id}")


@studies.command("redrive")
def studies_redrive(
    study_uid: Annotated[Optional[str], typer.Argument(help="StudyInstanceUID")] = None,
    state: Annotated[Optional[str], typer.Option(help="Todos los estudios en este estado (failed) / every study in this state")] = None,
    hospital: Annotated[Optional[str], typer.Option(help="Solo de este hospital / only this hospital's")] = None,
    by: OperatorOption = "",
) -> None:
    """Reenvía un estudio (o todos los fallidos) desde la etapa donde se detuvo / re-drive a study (or every failed one)."""
    if (study_uid is None) == (state is None):
        raise _fail(OperationError("Indique un UID o --state / give a UID or --state"))
    engine, operator = _engine(), by or getpass.getuser()
    if study_uid is not None:
        studies_found = [(hospital, study_uid)]
    else:
        with Session(engine) as session:
            query = select(StudyRow.hospital_id, StudyRow.study_uid).where(StudyRow.state == state)
            if hospital:
                query = query.where(StudyRow.hospital_id == hospital)
            studies_found = [(found_hospital, uid) for found_hospital, uid in session.exec(query).all()]
    done = 0
    for study_hospital, uid in studies_found:
        try:
            wanted = redrive_study(engine, uid, operator, study_hospital)
        except OperationError as exc:
            if study_uid is not None:
                raise _fail(exc) from exc
            console.print(f"[yellow]{uid}: {exc}[/]")
            continue
        done += 1
        console.print(f"{uid}: reenviado {wanted} / re-driven")
    console.print(f"{done} estudio(s) reenviado(s) / stud(y/ies) re-driven")

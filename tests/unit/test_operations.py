"""The operators' commands: ``mdd dlq list|show|replay|discard`` and ``mdd studies redrive``, each audited."""

from __future__ import annotations

import json
from uuid import uuid4
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from services.cli import app
from services.status_api.auth_tables import AuditRow
from services.status_api.projector import project
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from shared.bus import MemoryBus
from shared.db import init_db
from shared.events import StudyCompleted, producer
from shared.reliability.consumed import ConsumerLedger
from shared.reliability.tables import DeadLetterRow, OutboxRow
from shared.settings import Settings

UID = "1.2.826.0.1.3680043.10.90"


def completed() -> StudyCompleted:
    return StudyCompleted(study_uid=UID, hospital_id="HGE", correlation_id="c", producer=producer("ingest"),
                          reason="all_views", views=[])


@pytest.fixture
async def failed_study(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, StudyCompleted]:
    """A study whose preprocessing gave up: its event dead-lettered, the study projected ``failed``."""
    monkeypatch.setenv("MDD_DATA_DIR", str(settings.data_dir))
    bus = MemoryBus(settings)

    async def broken(_: StudyCompleted) -> None:
        raise ValueError("imagen ilegible / unreadable image")

    bus.subscribe(StudyCompleted, broken, service="preprocess")
    await bus.start()
    event = completed()
    await bus.publish(event)
    await bus.drain()
    await bus.stop()
    init_db(bus.engine, [StudyRow, StudyEventRow, NotificationRow])
    project(bus.engine, event)
    failed = next(json.loads(p) for t, p in bus.sent if t == "mdd.study.failed")
    from shared.events import StudyFailed

    project(bus.engine, StudyFailed.model_validate(failed))
    return settings, event


def run(*args: str) -> str:
    """What the command prints (its standard output; log lines go to standard error)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_dead_letter_is_listed_shown_and_replayed_to_its_consumer_with_an_audit_entry(
    failed_study: tuple[Settings, StudyCompleted],
) -> None:
    settings, event = failed_study
    listing = run("dlq", "list")
    assert "preprocess" in listing and f"HGE\t{UID}" in listing and "1 carta" in listing
    engine = MemoryBus(settings).engine
    with Session(engine) as session:
        [letter] = session.exec(select(DeadLetterRow)).all()
    shown = json.loads(run("dlq", "show", letter.dead_letter_id[:8]))
    assert "imagen ilegible" in shown["error"] and json.loads(shown["payload"])["event_id"] == str(event.event_id)

    run("dlq", "replay", letter.dead_letter_id[:8], "--by", "ana.ti")
    with Session(engine) as session:
        assert session.get(DeadLetterRow, letter.dead_letter_id).status == "replayed"  # type: ignore[union-attr]
        queued = session.exec(select(OutboxRow).where(OutboxRow.event_id == str(event.event_id))).one()
        assert queued.published_at is None and queued.topic == "mdd.study.completed"
        [audit] = session.exec(select(AuditRow).where(AuditRow.action == "dlq.replay")).all()
        assert audit.principal == "operador:ana.ti" and audit.study_uid == UID
    # The consumer's attempts are forgotten: it will handle the message afresh.
    attempt = ConsumerLedger(engine).begin("preprocess", str(event.event_id))
    assert (attempt.status, attempt.attempts, attempt.failures) == ("running", 1, 0)
    # A letter already replayed is not replayed twice.
    result = CliRunner().invoke(app, ["dlq", "replay", letter.dead_letter_id])
    assert result.exit_code == 2 and "replayed" in result.output
    assert "0 carta" in run("dlq", "list")


def test_a_dead_letter_discarded_keeps_its_reason_and_needs_one(failed_study: tuple[Settings, StudyCompleted]) -> None:
    settings, _ = failed_study
    engine = MemoryBus(settings).engine
    with Session(engine) as session:
        [letter] = session.exec(select(DeadLetterRow)).all()
    assert CliRunner().invoke(app, ["dlq", "discard", letter.dead_letter_id]).exit_code != 0  # --reason is required
    run("dlq", "discard", letter.dead_letter_id, "--reason", "no es una mastografía", "--by", "luis")
    with Session(engine) as session:
        row = session.get(DeadLetterRow, letter.dead_letter_id)
        assert row is not None and (row.status, row.resolution, row.resolved_by) == ("discarded", "no es una mastografía", "luis")
        assert session.exec(select(AuditRow).where(AuditRow.action == "dlq.discard")).one().detail.endswith("mastografía")
    assert "discarded" in run("dlq", "list", "--status", "all")


def test_failed_studies_are_re_driven_from_the_stage_where_they_stopped(failed_study: tuple[Settings, StudyCompleted]) -> None:
    settings, event = failed_study
    engine = MemoryBus(settings).engine
    output = run("studies", "redrive", "--state", "failed", "--by", "ana.ti")
    assert f"{UID}: reenviado study.completed" in output and "1 estudio" in output
    with Session(engine) as session:
        queued = session.exec(select(OutboxRow).where(OutboxRow.event_id == str(event.event_id))).one()
        assert queued.published_at is None
        assert session.exec(select(DeadLetterRow)).one().status == "replayed"
        assert session.exec(select(AuditRow).where(AuditRow.action == "study.redrive")).one().study_uid == UID
    result = CliRunner().invoke(app, ["studies", "redrive", "9.9.9"])
    assert result.exit_code == 2 and "desconocido" in result.output


def test_redrive_needs_a_study_or_a_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDD_DATA_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(app, ["studies", "redrive"])
    assert result.exit_code == 2 and "--state" in result.output


def test_a_uid_two_hospitals_use_is_re_driven_only_for_the_hospital_the_operator_names(
    failed_study: tuple[Settings, StudyCompleted],
) -> None:
    settings, event = failed_study
    engine = MemoryBus(settings).engine
    # Another hospital's study with the same UID, done: re-driving the first must not touch it.
    twin = event.model_copy(update={"hospital_id": "HOSP-B", "event_id": uuid4()})
    project(engine, twin)
    result = CliRunner().invoke(app, ["studies", "redrive", UID])
    assert result.exit_code == 2 and "HGE" in result.output and "HOSP-B" in result.output and "--hospital" in result.output
    with Session(engine) as session:
        assert session.exec(select(OutboxRow).where(OutboxRow.event_id == str(event.event_id))).first() is None

    assert "1 estudio" in run("studies", "redrive", UID, "--hospital", "HGE", "--by", "ana.ti")
    with Session(engine) as session:
        assert session.exec(select(OutboxRow).where(OutboxRow.event_id == str(event.event_id))).one().published_at is None
        assert session.exec(select(OutboxRow).where(OutboxRow.event_id == str(twin.event_id))).first() is None
        audit = session.exec(select(AuditRow).where(AuditRow.action == "study.redrive")).one()
        assert (audit.study_uid, audit.hospital_id) == (UID, "HGE")
    assert "1 carta" in run("dlq", "list", "--status", "all", "--hospital", "HGE")
    assert "0 carta" in run("dlq", "list", "--status", "all", "--hospital", "HOSP-B")

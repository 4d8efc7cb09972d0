"""Alembic migrations on SQLite (embedded mode) and on a real PostgreSQL (distributed mode).

The drift test is what keeps table changes honest: a model changed or added without a revision
makes ``compare_metadata`` report a difference and fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from services.ingest.tables import AssemblingStudy, StoredInstance
from services.notify.tables import GreenStudy, NotificationRecord
from services.status_api.tables import StudyEventRow, StudyRow
from shared.db import current_revisions, head_revisions, init_db, make_engine, upgrade_db
from shared.events import utc_now
from shared.schema import TABLE_MODULES, all_tables

ROOT = Path(__file__).resolve().parents[2]
# The tables as create_all made them before migrations existed (the baseline revision, 0001).
BASELINE_TABLES = (
    "ingest_instance", "ingest_pacs_poll", "ingest_study", "notify_delivery", "notify_green_study",
    "notify_pacs_results", "notify_provider", "notify_provider_deid_map", "notify_provider_delivery",
    "status_event", "status_notification", "status_study",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'mdd.db').as_posix()}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url``, disposed after the test."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def drift(engine: Engine) -> list[object]:
    """Differences between the database and every service's models (empty when they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, all_tables()))


def table_names(engine: Engine) -> set[str]:
    """Tables present in the database."""
    return set(inspect(engine).get_table_names())


def revision_of(engine: Engine) -> frozenset[str]:
    """The revision(s) the database is at."""
    with engine.connect() as connection:
        return current_revisions(connection)


def add_study(engine: Engine, study_uid: str) -> None:
    """A row a user would not want to lose."""
    now = utc_now()
    with Session(engine) as session:
        session.add(StudyRow(study_uid=study_uid, hospital_id="HGE", created_at=now, updated_at=now))
        session.commit()


def test_upgrade_from_empty_reaches_head_with_no_drift(engine: Engine) -> None:
    assert revision_of(engine) == frozenset()
    upgrade_db(engine)
    assert revision_of(engine) == head_revisions()
    assert set(all_tables().tables) <= table_names(engine)
    assert drift(engine) == []
    # The migrated schema works for the services: a study, its events and an aware timestamp round-trip.
    earlier = utc_now() - timedelta(minutes=5)
    with Session(engine) as session:
        session.add(AssemblingStudy(study_uid="1.2", hospital_id="H", correlation_id="c", first_instance_at=earlier,
                                    last_instance_at=earlier, views_seen=["L-CC"]))
        session.commit()
    with Session(engine) as session:
        study = session.get(AssemblingStudy, ("H", "1.2"))
        assert study is not None and study.views_seen == ["L-CC"] and study.last_instance_at == earlier


def test_upgrade_twice_changes_nothing(engine: Engine) -> None:
    upgrade_db(engine)
    add_study(engine, "1.2.3")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    upgrade_db(engine)
    init_db(engine, [StudyRow, StudyEventRow])
    assert revision_of(engine) == head_revisions()
    assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP", "INSERT", "UPDATE"))]
    with Session(engine) as session:
        assert session.get(StudyRow, ("HGE", "1.2.3")) is not None


def test_pre_migration_database_is_adopted(engine: Engine) -> None:
    all_tables()
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[name] for name in BASELINE_TABLES])
    add_study(engine, "1.2.840.9")
    assert "alembic_version" not in table_names(engine)
    upgrade_db(engine)
    assert revision_of(engine) == head_revisions()
    assert drift(engine) == []
    with Session(engine) as session:
        assert session.get(StudyRow, ("HGE", "1.2.840.9")) is not None


def test_partly_created_pre_migration_database_is_completed(engine: Engine) -> None:
    """Only ingest had run before migrations: its tables are kept, the others are created."""
    init_tables = [StoredInstance.__table__, AssemblingStudy.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=init_tables)
    now = utc_now()
    with Session(engine) as session:
        session.add(AssemblingStudy(study_uid="7.7", hospital_id="H", correlation_id="c", first_instance_at=now, last_instance_at=now))
        session.commit()
    init_db(engine, [NotificationRecord, GreenStudy])
    assert revision_of(engine) == head_revisions()
    assert drift(engine) == []
    with Session(engine) as session:
        assert session.get(AssemblingStudy, ("H", "7.7")) is not None


def test_rows_kept_from_before_hospital_scoped_keys_take_their_studys_hospital(engine: Engine) -> None:
    """Revision 0007 puts the hospital in front of every UID key: rows written under 0006 keep their
    data and take the hospital of their study, and another hospital may then reuse the same UIDs."""
    from alembic import command

    from shared.db import migration_config

    with engine.begin() as connection:
        command.upgrade(migration_config(connection), "0006")
    at = "2026-01-02 03:04:05"
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO ingest_study (study_uid, hospital_id, correlation_id, accession_number, patient_key, first_instance_at,"
            " last_instance_at, views_seen) VALUES ('1.2.3', 'HOSP-A', 'c', '', '', :at, :at, '[]')",
            "INSERT INTO ingest_instance (sop_instance_uid, study_uid, series_instance_uid, object_key, sha256, size_bytes, stored_at)"
            " VALUES ('1.2.3.1', '1.2.3', '1.2.3.9', 'HOSP-A/1.2.3/1.2.3.9/1.2.3.1.dcm', 'ab', 10, :at)",
            "INSERT INTO status_study (study_uid, hospital_id, accession_number, correlation_id, progress, state, status_light,"
            " failed, overdue, instance_count, created_at, updated_at) VALUES ('1.2.3', 'HOSP-A', '', 'c', 'notified', 'notified',"
            " 'GREEN', false, false, 1, :at, :at)",
            "INSERT INTO status_event (event_id, study_uid, event_type, producer, occurred_at, received_at, payload)"
            " VALUES ('e1', '1.2.3', 'study.completed', 'ingest 1', :at, :at, '{}')",
            "INSERT INTO status_watchdog (study_uid, stage, redrives) VALUES ('1.2.3', 'notify', 1)",
            "INSERT INTO auth_assignment (study_uid, provider_id, assigned_by, assigned_at) VALUES ('1.2.3', 'lectura', 'admin', :at)",
        ):
            connection.execute(text(statement), {"at": at})
    upgrade_db(engine)
    assert revision_of(engine) == head_revisions()
    assert drift(engine) == []
    with engine.connect() as connection:
        for table in ("ingest_instance", "status_event", "status_watchdog", "auth_assignment"):
            assert connection.execute(text(f"SELECT hospital_id FROM {table}")).scalars().all() == ["HOSP-A"], table
        keys = {table: set(inspect(connection).get_pk_constraint(table)["constrained_columns"])
                for table in ("ingest_instance", "ingest_study", "status_instance", "status_study", "status_watchdog")}
    assert keys == {
        "ingest_instance": {"hospital_id", "sop_instance_uid"}, "ingest_study": {"hospital_id", "study_uid"},
        "status_instance": {"hospital_id", "sop_instance_uid"}, "status_study": {"hospital_id", "study_uid"},
        "status_watchdog": {"hospital_id", "study_uid", "stage"},
    }
    now = utc_now()
    with Session(engine) as session:
        kept = session.get(StoredInstance, ("HOSP-A", "1.2.3.1"))
        assert kept is not None and kept.object_key.startswith("HOSP-A/") and kept.size_bytes == 10
        session.add(AssemblingStudy(study_uid="1.2.3", hospital_id="HOSP-B", correlation_id="d", first_instance_at=now, last_instance_at=now))
        session.add(StudyRow(study_uid="1.2.3", hospital_id="HOSP-B", created_at=now, updated_at=now))
        session.commit()
        assert session.get(StudyRow, ("HOSP-A", "1.2.3")).state == "notified"  # type: ignore[union-attr]
        assert session.get(StudyRow, ("HOSP-B", "1.2.3")).state == "receiving"  # type: ignore[union-attr]
        # The generated triage rank survived the table's copy on SQLite.
        assert session.get(StudyRow, ("HOSP-A", "1.2.3")).triage_rank == 3  # type: ignore[union-attr]



def test_a_commitment_report_kept_from_before_0008_is_still_delivered_and_a_reused_transaction_is_another(engine: Engine) -> None:
    """Revision 0008 keys the pending commitment reports by requester: a report written under 0007 keeps
    its data under its new key, and another hospital's request with the same Transaction UID is another row."""
    from alembic import command

    from services.ingest.tables import PendingCommitmentReport, commitment_report_id
    from shared.db import migration_config

    with engine.begin() as connection:
        command.upgrade(migration_config(connection), "0007")
        connection.execute(text(
            "INSERT INTO ingest_commitment_report (transaction_uid, calling_ae, event_type, event_information, status,"
            " attempts, retries, detail, owner, updated_at) VALUES ('1.2.9', 'MAMO_SALA1', 1, '{}', 'pending', 0, 2, '', '', :at)"
        ), {"at": "2026-01-02 03:04:05"})
    upgrade_db(engine)
    assert revision_of(engine) == head_revisions()
    assert drift(engine) == []
    with engine.connect() as connection:
        assert inspect(connection).get_pk_constraint("ingest_commitment_report")["constrained_columns"] == ["report_id"]
    with Session(engine) as session:
        kept = session.get(PendingCommitmentReport, commitment_report_id("", "MAMO_SALA1", "1.2.9"))
        assert kept is not None and (kept.transaction_uid, kept.retries, kept.status) == ("1.2.9", 2, "pending")
        session.add(PendingCommitmentReport(
            report_id=commitment_report_id("HOSP-B", "MAMO_SALA1", "1.2.9"), hospital_id="HOSP-B", transaction_uid="1.2.9",
            calling_ae="MAMO_SALA1", event_type=2, event_information="{}", status="pending", updated_at=utc_now(),
        ))
        session.commit()
        assert session.get(PendingCommitmentReport, commitment_report_id("", "MAMO_SALA1", "1.2.9")).event_type == 1  # type: ignore[union-attr]


UPGRADE_IN_A_PROCESS = """
import sys, time
from shared.db import make_engine, upgrade_db
from shared.schema import all_tables
all_tables()
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
engine = make_engine(sys.argv[1])
upgrade_db(engine)
engine.dispose()
"""


def test_concurrent_upgrades_from_several_processes(database_url: str) -> None:
    """Services started together on one empty database: every upgrade succeeds, the schema is made once."""
    start_at = f"{time.time() + 12:.3f}"  # after every process has imported its modules
    processes = [
        subprocess.Popen([sys.executable, "-c", UPGRADE_IN_A_PROCESS, database_url, start_at], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    engine = make_engine(database_url)
    try:
        assert revision_of(engine) == head_revisions()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == len(head_revisions())
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_embedded_services_start_together_on_one_sqlite_file(tmp_path: Path) -> None:
    """Embedded mode: every service calls init_db at once on the same engine and SQLite file."""
    engine = make_engine(f"sqlite:///{(tmp_path / 'mdd.db').as_posix()}")
    per_service = [[StoredInstance, AssemblingStudy], [NotificationRecord, GreenStudy], [StudyRow, StudyEventRow]]
    with ThreadPoolExecutor(max_workers=len(per_service)) as pool:
        started = [pool.submit(init_db, engine, tables) for tables in per_service]
        for future in started:
            future.result(timeout=120)  # re-raises what the service's start-up raised
    assert revision_of(engine) == head_revisions()
    assert drift(engine) == []
    engine.dispose()


def test_cli_upgrades_and_reports_the_revision(database_url: str) -> None:
    def mdd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", "db", *args, "--database-url", database_url],
                              check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)

    before = mdd("current")
    assert before.returncode == 1 and "ninguna / none" in before.stdout, before.stdout + before.stderr
    upgraded = mdd("upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    after = mdd("current")
    assert after.returncode == 0 and "Al día / up to date" in after.stdout
    assert all(revision in after.stdout for revision in head_revisions())


def _modules_declaring_tables() -> set[str]:
    """Modules of services/ and shared/ with a ``class X(SQLModel, table=True)``."""
    found = set()
    for folder in ("services", "shared"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    k.arg == "table" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
                ):
                    found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def test_every_table_module_is_in_the_schema_registry() -> None:
    """A module with tables that shared/schema.py does not import would escape the drift test."""
    declaring = _modules_declaring_tables()
    assert "services.status_api.tables" in declaring
    unregistered = declaring - set(TABLE_MODULES)
    assert unregistered == set(), f"add to shared/schema.py TABLE_MODULES, then write their revision: {sorted(unregistered)}"

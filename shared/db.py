"""Database engine, sessions and schema migrations (SQLModel + Alembic): SQLite or PostgreSQL by URL.

Each service declares its own tables (SQLModel classes in its folder) and calls ``init_db`` at
start-up; the schema itself is managed by the Alembic revisions in ``shared/migrations``, which
``upgrade_db`` applies. Several services (processes) may start at once on one database: the
upgrade runs under a PostgreSQL advisory lock, or a file lock next to the SQLite file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

log = logging.getLogger("mdd.db")

MIGRATIONS_DIR: Final[Path] = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock held while migrating (any constant shared by all services).
MIGRATION_LOCK_KEY: Final[int] = 0x6D64645F6D696772
VERSION_TABLE: Final[str] = "alembic_version"
_process_lock = threading.Lock()


class MigrationError(RuntimeError):
    """The database cannot be brought to the schema this code expects."""


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout for concurrent writers.

    On PostgreSQL ``pool_size`` connections stay open and as many more are opened at peaks (each
    new connection starts a server process, so a pool smaller than the usual concurrency churns).
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per session on the ingest hot path; a dropped connection
    # fails that one request (the modality retries) and the pool replaces it.
    return create_engine(url, pool_recycle=1800, pool_size=pool_size, max_overflow=pool_size)


def migration_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code; with ``connection``, migrations run on it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revisions() -> frozenset[str]:
    """The revisions this code expects the database to be at."""
    return frozenset(ScriptDirectory.from_config(migration_config()).get_heads())


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revisions the database is at (empty for a database never migrated)."""
    return frozenset(MigrationContext.configure(connection).get_current_heads())


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations: one thread of this process, and one process per SQLite file.

    PostgreSQL is serialised across processes by the advisory lock taken in ``upgrade_db``.
    """
    with ExitStack() as stack:
        stack.enter_context(_process_lock)
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            stack.enter_context(FileLock(f"{database}.migrate.lock", timeout=300))
        yield


def _is_pre_migration(connection: Connection) -> bool:
    """Tables made by ``create_all`` before migrations existed, and no version table."""
    names = set(inspect(connection).get_table_names())
    return bool(names) and VERSION_TABLE not in names


def upgrade_db(engine: Engine) -> None:
    """Migrate the database to the latest revision; a no-op when it is there already.

    Safe to call from several services at once. A database created by ``create_all`` before
    migrations existed is adopted: the baseline revision creates only the tables it lacks.
    """
    heads = head_revisions()
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Held until this transaction ends; PostgreSQL DDL is transactional, so a concurrent
            # upgrade waits here and then finds the database at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        current = current_revisions(connection)
        if current == heads:
            return
        if not current and _is_pre_migration(connection):
            log.info("Base de datos anterior a las migraciones: se adopta / adopting a pre-migration database")
        try:
            command.upgrade(migration_config(connection), "head")
        except CommandError as exc:
            raise MigrationError(
                f"No se pudo migrar la base de datos (revisión actual {sorted(current)}, esperada {sorted(heads)}):"
                f" ¿código más antiguo que la base? / cannot migrate the database: {exc}"
            ) from exc
        log.info("Base de datos migrada / database migrated: %s -> %s", sorted(current), sorted(heads))


def init_db(engine: Engine, tables: list[type[SQLModel]]) -> None:
    """Bring the database to the latest schema (every service's tables), then check ``tables``.

    A table of ``tables`` that no revision creates yet is created directly, with a warning, so a
    service keeps working while its revision is written; the migration tests fail until it is.
    A database that is not up yet is waited for: services start in any order.
    """
    from shared.reliability.retry import until_available_sync

    until_available_sync(lambda: upgrade_db(engine), "database schema")
    inspector = inspect(engine)
    missing = [table.__table__ for table in tables if not inspector.has_table(table.__tablename__)]  # type: ignore[attr-defined]
    if missing:
        log.warning(
            "Tablas sin migración, creadas directamente / tables without a migration, created directly: %s",
            ", ".join(table.name for table in missing),
        )
        SQLModel.metadata.create_all(engine, tables=missing)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def upsert(session: Session, table: object) -> Any:
    """An ``INSERT`` for ``table`` (a model or a ``Table``) that takes ``ON CONFLICT`` clauses, in the
    session's dialect (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)  # type: ignore[arg-type]

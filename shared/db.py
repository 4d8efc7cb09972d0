"""Database engine and sessions (SQLModel): SQLite by default, PostgreSQL by URL.

Each service declares its own tables (SQLModel classes in its folder) and calls ``init_db`` with
them at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout for concurrent writers."""
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
    return create_engine(url, pool_recycle=1800)


def init_db(engine: Engine, tables: list[type[SQLModel]]) -> None:
    """Create the given tables if they do not exist."""
    SQLModel.metadata.create_all(engine, tables=[table.__table__ for table in tables])  # type: ignore[attr-defined]


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

"""Alembic environment: the tables of every service, on a connection given in code or on a URL.

``shared.db.upgrade_db`` passes its own connection (``config.attributes["connection"]``) so that the
upgrade runs inside the transaction that holds the migration lock. From the command line the
database is ``-x url=…``, else the project's settings (``MDD_DATABASE_URL`` / ``MDD_DATA_DIR``).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlalchemy.types import DateTime, String, TypeDecorator

from shared.db import make_engine
from shared.schema import all_tables

config = context.config
target_metadata = all_tables()


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render SQLModel's column types (``AutoString``, ``UTCDateTime``) as the plain SQLAlchemy types
    they store, so that revisions do not depend on sqlmodel internals."""
    if kind == "type" and isinstance(obj, TypeDecorator) and type(obj).__module__.startswith("sqlmodel."):
        impl = obj.impl_instance
        if isinstance(impl, DateTime):
            return f"sa.DateTime(timezone={impl.timezone})"
        if isinstance(impl, String):
            return f"sa.String(length={impl.length})" if impl.length else "sa.String()"
    return False


def configure(**kwargs: Any) -> None:
    """Configure the migration context the same way online and offline."""
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies the table instead
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def database_url() -> str:
    """The URL from ``-x url=…`` or from the project's settings."""
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from shared.settings import Settings

    return Settings().resolved_database_url


def run_on(connection: Connection) -> None:
    """Run the migrations on ``connection``."""
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    run_on(given)
else:
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()

"""Registry of every service's tables, for the migration tool only.

Services never import each other at runtime; each declares its own tables in its own folder.
Alembic, however, must see the tables of *all* services at once to compare the models with the
database and to generate migrations. This module is the one place that imports every table
module, and only ``shared/migrations/env.py``, the migration tests and the developer tooling
import it. A new module that declares tables (``SQLModel, table=True``) must be added to
``TABLE_MODULES``; tests/integration/test_migrations.py fails until it is.
"""

from __future__ import annotations

import importlib
from typing import Final

from sqlalchemy import MetaData
from sqlmodel import SQLModel

TABLE_MODULES: Final[tuple[str, ...]] = (
    "shared.reliability.tables",
    "services.ingest.tables",
    "services.ingest.poller",
    "services.notify.tables",
    "services.notify.pacs_results",
    "services.notify.providers.tables",
    "services.notify.providers.registry",
    "services.status_api.tables",
    "services.status_api.auth_tables",
    "shared.instance_index",
    "services.status_api.watchdog",
)


def all_tables() -> MetaData:
    """The metadata holding every service's tables (imports each module of ``TABLE_MODULES``)."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata

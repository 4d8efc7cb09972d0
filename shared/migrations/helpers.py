"""Helpers for revisions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def table_missing(name: str) -> bool:
    """Whether the table ``name`` does not exist yet (a table a service may have made by ``create_all``)."""
    return not sa.inspect(op.get_bind()).has_table(name)

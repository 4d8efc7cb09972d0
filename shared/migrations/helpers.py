"""Helpers for revisions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def table_missing(name: str) -> bool:
    """Whether the table ``name`` does not exist yet (a table a service may have made by ``create_all``)."""
    return not sa.inspect(op.get_bind()).has_table(name)


def column_missing(table: str, column: str) -> bool:
    """Whether ``table`` lacks ``column`` (a table ``create_all`` made from newer models already has it)."""
    return column not in {found["name"] for found in sa.inspect(op.get_bind()).get_columns(table)}


def index_missing(table: str, index: str) -> bool:
    """Whether ``table`` lacks the index ``index``."""
    return index not in {found["name"] for found in sa.inspect(op.get_bind()).get_indexes(table)}

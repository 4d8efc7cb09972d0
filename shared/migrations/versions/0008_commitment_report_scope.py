"""storage commitment reports keyed by hospital, calling AE and Transaction UID

``ingest_commitment_report`` was keyed by the Transaction UID alone, so a request from another
hospital (or another modality) that reused a Transaction UID replaced the pending report of the
first. Its key becomes ``report_id`` (``hospital/calling AE/Transaction UID``) and it gains the
requester's hospital. Reports kept from before keep an empty hospital and are delivered as before.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import column_missing

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'ingest_commitment_report'


def _set_key(columns: tuple[str, ...]) -> None:
    bind = op.get_bind()
    current = sa.inspect(bind).get_pk_constraint(TABLE)
    if tuple(current['constrained_columns']) == columns:
        return
    if bind.dialect.name == 'sqlite':  # SQLite cannot alter a primary key: copy into a table keyed anew
        found = sa.Table(TABLE, sa.MetaData(), autoload_with=bind)
        keyed = sa.Table(TABLE, sa.MetaData(), *[
            sa.Column(column.name, column.type, primary_key=column.name in columns,
                      nullable=column.nullable and column.name not in columns)
            for column in found.columns
        ])
        for index in found.indexes:
            sa.Index(index.name, *[keyed.c[column.name] for column in index.columns])
        with op.batch_alter_table(TABLE, recreate='always', copy_from=keyed):
            pass
    else:
        op.drop_constraint(current['name'], TABLE, type_='primary')
        op.create_primary_key(f'{TABLE}_pkey', TABLE, list(columns))


def upgrade() -> None:
    """Add the hospital and the report id, fill them for rows kept from before, key by the report id."""
    if column_missing(TABLE, 'hospital_id'):
        op.add_column(TABLE, sa.Column('hospital_id', sa.String(), nullable=False, server_default=''))
    if column_missing(TABLE, 'report_id'):
        op.add_column(TABLE, sa.Column('report_id', sa.String(), nullable=False, server_default=''))
        op.execute(f"UPDATE {TABLE} SET report_id = hospital_id || '/' || calling_ae || '/' || transaction_uid")
        if op.get_bind().dialect.name != 'sqlite':  # SQLite's copy below leaves the default behind
            op.alter_column(TABLE, 'report_id', server_default=None)
    _set_key(('report_id',))


def downgrade() -> None:
    """Back to the Transaction UID alone (fails if two requesters share one by then)."""
    _set_key(('transaction_uid',))
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column('report_id')
        batch.drop_column('hospital_id')

"""every study and instance keyed by hospital as well as by UID

A Study or SOP Instance UID that another hospital reuses is another study or instance: the tables
that were keyed by UID alone get the hospital in front of their primary key (``ingest_instance``,
``ingest_study``, ``status_instance``, ``status_study``, ``status_watchdog``, ``auth_assignment``,
``notify_green_study``), and the tables that name a study by its UID gain the hospital next to it
(``status_event``, ``auth_audit``, ``reliability_consumed``, ``reliability_dead_letter``). Rows kept
from before take the hospital of the study they belong to.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import column_missing, index_missing

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables whose primary key gains the hospital, in front: (table, new key).
REKEYED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('ingest_instance', ('hospital_id', 'sop_instance_uid')),
    ('ingest_study', ('hospital_id', 'study_uid')),
    ('status_instance', ('hospital_id', 'sop_instance_uid')),
    ('status_study', ('hospital_id', 'study_uid')),
    ('status_watchdog', ('hospital_id', 'study_uid', 'stage')),
    ('auth_assignment', ('hospital_id', 'study_uid', 'provider_id')),
    ('notify_green_study', ('hospital_id', 'study_uid')),
)
#: Columns added (table, column, nullable, the study table their value is read from).
ADDED: tuple[tuple[str, bool, str | None], ...] = (
    ('ingest_instance', False, 'ingest_study'),
    ('status_event', False, 'status_study'),
    ('status_watchdog', False, 'status_study'),
    ('auth_assignment', False, 'status_study'),
    ('auth_audit', True, 'status_study'),
    ('reliability_consumed', False, 'status_study'),
    ('reliability_dead_letter', True, 'status_study'),
)
INDEXED = ('status_event', 'auth_audit', 'reliability_consumed', 'reliability_dead_letter')
#: Indexes on ``hospital_id`` alone that the new primary keys make redundant.
DROPPED_INDEXES = (
    ('status_study', 'ix_status_study_hospital_id'),
    ('status_instance', 'ix_status_instance_hospital_id'),
    ('notify_green_study', 'ix_notify_green_study_hospital_id'),
)


def _add_hospital_columns() -> None:
    for table, nullable, source in ADDED:
        if not column_missing(table, 'hospital_id'):
            continue
        op.add_column(table, sa.Column('hospital_id', sa.String(), nullable=nullable,
                                       server_default=None if nullable else ''))
        if source is not None:
            # Rows of a study kept from before belong to the hospital that study was recorded for.
            op.execute(
                f"UPDATE {table} SET hospital_id = COALESCE((SELECT {source}.hospital_id FROM {source} "
                f"WHERE {source}.study_uid = {table}.study_uid), hospital_id)"
            )
    for table in INDEXED:
        if index_missing(table, f'ix_{table}_hospital_id'):
            op.create_index(f'ix_{table}_hospital_id', table, ['hospital_id'])


# Written out here, not imported: a revision keeps the SQL it was written with (as in 0003).
TRIAGE_RANK_SQL = "CASE triage_light WHEN 'RED' THEN 0 WHEN 'YELLOW' THEN 1 WHEN 'GREEN' THEN 2 ELSE 3 END"


TRIAGE_INDEXES = (
    ('ix_status_study_hospital_triage', ['hospital_id', 'triage_rank', sa.text('updated_at DESC'), 'study_uid']),
    ('ix_status_study_triage', ['triage_rank', sa.text('updated_at DESC'), 'study_uid']),
)


def _sqlite_recreate(table: str, key: tuple[str, ...]) -> None:
    """Copy ``table`` into one keyed by ``key`` (SQLite cannot alter a primary key).

    Batch mode would copy ``status_study``'s generated column into the new table, which SQLite
    refuses, so that column and its indexes are dropped first and made again afterwards, as 0003 did.
    """
    generated = table == 'status_study'
    if generated:
        for name, _columns in TRIAGE_INDEXES:
            op.drop_index(name, table_name=table)
        op.execute('ALTER TABLE status_study DROP COLUMN triage_rank')
    columns = [sa.Column(name, sa.String(), primary_key=True, nullable=False) for name in key]
    with op.batch_alter_table(table, recreate='always', reflect_args=columns):
        pass
    if generated:
        op.add_column(table, sa.Column('triage_rank', sa.Integer(), sa.Computed(TRIAGE_RANK_SQL, persisted=False), nullable=True))
        for name, index_columns in TRIAGE_INDEXES:
            op.create_index(name, table, index_columns)


def _rekey(table: str, key: tuple[str, ...]) -> None:
    bind = op.get_bind()
    current = sa.inspect(bind).get_pk_constraint(table)
    if tuple(current['constrained_columns']) == key:
        return
    if bind.dialect.name == 'sqlite':
        _sqlite_recreate(table, key)
    else:
        op.drop_constraint(current['name'], table, type_='primary')
        op.create_primary_key(f'{table}_pkey', table, list(key))


def upgrade() -> None:
    """Add the hospital where it was missing, then put it in front of each UID key."""
    _add_hospital_columns()
    for table, index in DROPPED_INDEXES:
        if not index_missing(table, index):
            op.drop_index(index, table_name=table)
    for table, key in REKEYED:
        _rekey(table, key)


def downgrade() -> None:
    """Back to keys by UID alone (fails if two hospitals share a UID by then)."""
    bind = op.get_bind()
    for table, key in REKEYED:
        old = tuple(column for column in key if column != 'hospital_id')
        if bind.dialect.name == 'sqlite':
            _sqlite_recreate(table, old)
        else:
            op.drop_constraint(f'{table}_pkey', table, type_='primary')
            op.create_primary_key(f'{table}_pkey', table, list(old))
    for table, index in DROPPED_INDEXES:
        op.create_index(index, table, ['hospital_id'])
    for table in INDEXED:
        op.drop_index(f'ix_{table}_hospital_id', table_name=table)
    for table, _nullable, _source in ADDED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('hospital_id')

"""status api: the study list's "suspicious first" order served by an index

A generated column ``status_study.triage_rank`` (0 RED, 1 YELLOW, 2 GREEN, 3 not triaged; stored
on PostgreSQL, virtual on SQLite) and two indexes in the list's triage order, within a hospital
and over all hospitals.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here, not imported: a revision keeps the SQL it was written with.
TRIAGE_RANK_SQL = "CASE triage_light WHEN 'RED' THEN 0 WHEN 'YELLOW' THEN 1 WHEN 'GREEN' THEN 2 ELSE 3 END"


def upgrade() -> None:
    """Add the rank column and the triage-order indexes (kept if a service made them already)."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if 'triage_rank' not in {column['name'] for column in inspector.get_columns('status_study')}:
        # SQLite can add only a virtual generated column; PostgreSQL indexes only stored ones.
        stored = bind.dialect.name != 'sqlite'
        op.add_column('status_study', sa.Column('triage_rank', sa.Integer(), sa.Computed(TRIAGE_RANK_SQL, persisted=stored),
                                                nullable=True))
    indexes = {index['name'] for index in inspector.get_indexes('status_study')}
    if 'ix_status_study_hospital_triage' not in indexes:
        op.create_index('ix_status_study_hospital_triage', 'status_study',
                        ['hospital_id', 'triage_rank', sa.text('updated_at DESC'), 'study_uid'])
    if 'ix_status_study_triage' not in indexes:
        op.create_index('ix_status_study_triage', 'status_study', ['triage_rank', sa.text('updated_at DESC'), 'study_uid'])


def downgrade() -> None:
    """Drop the indexes and the column."""
    op.drop_index('ix_status_study_triage', table_name='status_study')
    op.drop_index('ix_status_study_hospital_triage', table_name='status_study')
    with op.batch_alter_table('status_study') as batch_op:
        batch_op.drop_column('triage_rank')

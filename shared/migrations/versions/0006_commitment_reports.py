"""storage commitment reports that survive a crash

``ingest_commitment_report`` holds each storage commitment decision until its N-EVENT-REPORT has
reached the modality, so that ingest sends it again after a restart or once the modality is back.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import table_missing

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the pending reports table (kept if a service made it already)."""
    if table_missing('ingest_commitment_report'):
        op.create_table('ingest_commitment_report',
        sa.Column('transaction_uid', sa.String(), nullable=False),
        sa.Column('calling_ae', sa.String(), nullable=False),
        sa.Column('event_type', sa.Integer(), nullable=False),
        sa.Column('event_information', sa.Text(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('retries', sa.Integer(), nullable=False),
        sa.Column('detail', sa.String(), nullable=False),
        sa.Column('owner', sa.String(), nullable=False),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('transaction_uid')
        )
        op.create_index('ix_ingest_commitment_report_next_attempt_at', 'ingest_commitment_report', ['next_attempt_at'])


def downgrade() -> None:
    """Drop the pending reports table."""
    op.drop_table('ingest_commitment_report')

"""auth hardening: sign-in throttling shared by every API replica

``auth_login_throttle`` counts failed sign-ins per username and per client address in the current
window and holds until when each is locked.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import table_missing

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the throttle table (kept if a service made it already)."""
    if table_missing('auth_login_throttle'):
        op.create_table('auth_login_throttle',
        sa.Column('subject', sa.String(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_started', sa.DateTime(timezone=True), nullable=False),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('subject')
        )


def downgrade() -> None:
    """Drop the throttle table."""
    op.drop_table('auth_login_throttle')

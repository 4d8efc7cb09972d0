"""auth hardening: sign-in throttling shared by every API replica, API keys that expire

``auth_login_throttle`` counts failed sign-ins per username and per client address in the current
window and holds until when each is locked. ``auth_api_key.expires_at``: after it the key is refused
(empty: it never expires, as every key made before this revision).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import column_missing, table_missing

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the throttle table and the keys' expiry column (kept if a service made them already)."""
    if table_missing('auth_login_throttle'):
        op.create_table('auth_login_throttle',
        sa.Column('subject', sa.String(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_started', sa.DateTime(timezone=True), nullable=False),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('subject')
        )
    if column_missing('auth_api_key', 'expires_at'):
        with op.batch_alter_table('auth_api_key', schema=None) as batch_op:
            batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop the expiry column and the throttle table."""
    with op.batch_alter_table('auth_api_key', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
    op.drop_table('auth_login_throttle')

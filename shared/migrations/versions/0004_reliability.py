"""reliability: outbox, consumer ledger, leadership leases, dead letters; notify's intents as claims

The tables of ``shared.reliability`` (see its modules): events written with the state they
announce until the relay publishes them, every consumer group's attempts and outputs per event,
one row per periodic task's leader, and the dead letters operators replay or discard. Notify's
deliveries become claims with a lease: the rendered message, its channel's target, a stable
Message-ID, when it is next due and until when its sender holds it; offers to providers likewise, with
the study they offer. The watchdog remembers when it told IT about a RED result not notified.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import column_missing, index_missing, table_missing

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the reliability tables."""
    if table_missing('reliability_consumed'):
        op.create_table('reliability_consumed',
        sa.Column('consumer', sa.String(), nullable=False),
        sa.Column('event_id', sa.String(), nullable=False),
        sa.Column('study_uid', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(), nullable=False),
        sa.Column('outputs', sa.JSON(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('consumer', 'event_id')
        )
        with op.batch_alter_table('reliability_consumed', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_reliability_consumed_study_uid'), ['study_uid'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_consumed_updated_at'), ['updated_at'], unique=False)

    if table_missing('reliability_dead_letter'):
        op.create_table('reliability_dead_letter',
        sa.Column('dead_letter_id', sa.String(), nullable=False),
        sa.Column('consumer', sa.String(), nullable=False),
        sa.Column('source_topic', sa.String(), nullable=False),
        sa.Column('event_id', sa.String(), nullable=True),
        sa.Column('study_uid', sa.String(), nullable=True),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolved_by', sa.String(), nullable=False),
        sa.Column('resolution', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('dead_letter_id')
        )
        with op.batch_alter_table('reliability_dead_letter', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_reliability_dead_letter_consumer'), ['consumer'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_dead_letter_created_at'), ['created_at'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_dead_letter_event_id'), ['event_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_dead_letter_status'), ['status'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_dead_letter_study_uid'), ['study_uid'], unique=False)

    if table_missing('reliability_lease'):
        op.create_table('reliability_lease',
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('owner', sa.String(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name')
        )
    if table_missing('reliability_outbox'):
        op.create_table('reliability_outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('event_id', sa.String(), nullable=False),
        sa.Column('study_uid', sa.String(), nullable=False),
        sa.Column('event_type', sa.String(), nullable=False),
        sa.Column('topic', sa.String(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('relay_after', sa.DateTime(timezone=True), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id')
        )
        with op.batch_alter_table('reliability_outbox', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_reliability_outbox_created_at'), ['created_at'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_outbox_published_at'), ['published_at'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_outbox_relay_after'), ['relay_after'], unique=False)
            batch_op.create_index(batch_op.f('ix_reliability_outbox_study_uid'), ['study_uid'], unique=False)


    _add_columns('notify_delivery', [
        sa.Column('recipient_id', sa.String(), nullable=False, server_default=''),
        sa.Column('target', sa.String(), nullable=False, server_default=''),
        sa.Column('subject', sa.Text(), nullable=False, server_default=''),
        sa.Column('body', sa.Text(), nullable=False, server_default=''),
        sa.Column('message_id', sa.String(), nullable=False, server_default=''),
        sa.Column('retries', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    ], index='next_attempt_at')
    _add_columns('notify_provider_delivery', [
        sa.Column('retries', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('owner', sa.String(), nullable=False, server_default=''),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('payload', sa.Text(), nullable=False, server_default=''),
    ], index='next_attempt_at')
    _add_columns('status_watchdog', [sa.Column('it_alerted_at', sa.DateTime(timezone=True), nullable=True)])


def _add_columns(table: str, columns: list[sa.Column], index: str | None = None) -> None:
    """Add the columns ``table`` lacks (and the index on ``index``), whoever made the table."""
    missing = [column for column in columns if column_missing(table, column.name)]
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in missing:
            batch_op.add_column(column)
        if index and index_missing(table, f'ix_{table}_{index}'):
            batch_op.create_index(batch_op.f(f'ix_{table}_{index}'), [index], unique=False)


def downgrade() -> None:
    """Drop the reliability tables and notify's claim columns."""
    with op.batch_alter_table('status_watchdog', schema=None) as batch_op:
        batch_op.drop_column('it_alerted_at')
    with op.batch_alter_table('notify_provider_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notify_provider_delivery_next_attempt_at'))
        for column in ('payload', 'next_attempt_at', 'lease_until', 'owner', 'retries'):
            batch_op.drop_column(column)
    with op.batch_alter_table('notify_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notify_delivery_next_attempt_at'))
        for column in ('next_attempt_at', 'lease_until', 'retries', 'message_id', 'body', 'subject', 'target', 'recipient_id'):
            batch_op.drop_column(column)
    with op.batch_alter_table('reliability_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reliability_outbox_study_uid'))
        batch_op.drop_index(batch_op.f('ix_reliability_outbox_relay_after'))
        batch_op.drop_index(batch_op.f('ix_reliability_outbox_published_at'))
        batch_op.drop_index(batch_op.f('ix_reliability_outbox_created_at'))

    op.drop_table('reliability_outbox')
    op.drop_table('reliability_lease')
    with op.batch_alter_table('reliability_dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reliability_dead_letter_study_uid'))
        batch_op.drop_index(batch_op.f('ix_reliability_dead_letter_status'))
        batch_op.drop_index(batch_op.f('ix_reliability_dead_letter_event_id'))
        batch_op.drop_index(batch_op.f('ix_reliability_dead_letter_created_at'))
        batch_op.drop_index(batch_op.f('ix_reliability_dead_letter_consumer'))

    op.drop_table('reliability_dead_letter')
    with op.batch_alter_table('reliability_consumed', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reliability_consumed_updated_at'))
        batch_op.drop_index(batch_op.f('ix_reliability_consumed_study_uid'))

    op.drop_table('reliability_consumed')

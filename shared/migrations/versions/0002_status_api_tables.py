"""status api: security, dicomweb index, watchdog

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import table_missing

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the status API's security, DICOMweb index and watchdog tables (kept if already there)."""
    if table_missing('auth_api_key'):
        op.create_table('auth_api_key',
        sa.Column('key_hash', sa.String(), nullable=False),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('role', sa.String(), nullable=False),
        sa.Column('hospitals', sa.JSON(), nullable=False),
        sa.Column('provider_id', sa.String(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key_hash')
        )
        with op.batch_alter_table('auth_api_key', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_auth_api_key_name'), ['name'], unique=False)

    if table_missing('auth_assignment'):
        op.create_table('auth_assignment',
        sa.Column('study_uid', sa.String(), nullable=False),
        sa.Column('provider_id', sa.String(), nullable=False),
        sa.Column('assigned_by', sa.String(), nullable=False),
        sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('study_uid', 'provider_id')
        )

    if table_missing('auth_audit'):
        op.create_table('auth_audit',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('principal', sa.String(), nullable=False),
        sa.Column('role', sa.String(), nullable=False),
        sa.Column('action', sa.String(), nullable=False),
        sa.Column('study_uid', sa.String(), nullable=True),
        sa.Column('client', sa.String(), nullable=False),
        sa.Column('detail', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('auth_audit', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_auth_audit_at'), ['at'], unique=False)
            batch_op.create_index(batch_op.f('ix_auth_audit_principal'), ['principal'], unique=False)
            batch_op.create_index(batch_op.f('ix_auth_audit_study_uid'), ['study_uid'], unique=False)

    if table_missing('auth_user'):
        op.create_table('auth_user',
        sa.Column('username', sa.String(), nullable=False),
        sa.Column('password_hash', sa.String(), nullable=False),
        sa.Column('role', sa.String(), nullable=False),
        sa.Column('hospitals', sa.JSON(), nullable=False),
        sa.Column('provider_id', sa.String(), nullable=True),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('username')
        )

    if table_missing('status_instance'):
        op.create_table('status_instance',
        sa.Column('sop_instance_uid', sa.String(), nullable=False),
        sa.Column('study_uid', sa.String(), nullable=False),
        sa.Column('series_uid', sa.String(), nullable=False),
        sa.Column('hospital_id', sa.String(), nullable=False),
        sa.Column('object_key', sa.String(), nullable=False),
        sa.Column('sop_class_uid', sa.String(), nullable=False),
        sa.Column('transfer_syntax_uid', sa.String(), nullable=False),
        sa.Column('modality', sa.String(), nullable=False),
        sa.Column('laterality', sa.String(), nullable=True),
        sa.Column('view_position', sa.String(), nullable=True),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('patient_name', sa.String(), nullable=False),
        sa.Column('patient_id', sa.String(), nullable=False),
        sa.Column('patient_birth_date', sa.String(), nullable=False),
        sa.Column('patient_sex', sa.String(), nullable=False),
        sa.Column('study_date', sa.String(), nullable=False),
        sa.Column('study_time', sa.String(), nullable=False),
        sa.Column('accession_number', sa.String(), nullable=False),
        sa.Column('study_description', sa.String(), nullable=False),
        sa.Column('study_id', sa.String(), nullable=False),
        sa.Column('referring_physician_name', sa.String(), nullable=False),
        sa.Column('series_number', sa.Integer(), nullable=True),
        sa.Column('series_description', sa.String(), nullable=False),
        sa.Column('instance_number', sa.Integer(), nullable=True),
        sa.Column('rows', sa.Integer(), nullable=True),
        sa.Column('columns', sa.Integer(), nullable=True),
        sa.Column('bits_allocated', sa.Integer(), nullable=True),
        sa.Column('number_of_frames', sa.Integer(), nullable=False),
        sa.Column('metadata_json', sa.JSON(), nullable=True),
        sa.Column('indexed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sop_instance_uid')
        )
        with op.batch_alter_table('status_instance', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_status_instance_accession_number'), ['accession_number'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_hospital_id'), ['hospital_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_modality'), ['modality'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_patient_id'), ['patient_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_series_uid'), ['series_uid'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_study_date'), ['study_date'], unique=False)
            batch_op.create_index(batch_op.f('ix_status_instance_study_uid'), ['study_uid'], unique=False)

    if table_missing('status_watchdog'):
        op.create_table('status_watchdog',
        sa.Column('study_uid', sa.String(), nullable=False),
        sa.Column('stage', sa.String(), nullable=False),
        sa.Column('overdue_published_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('redrives', sa.Integer(), nullable=False),
        sa.Column('redriven_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('study_uid', 'stage')
        )


def downgrade() -> None:
    """Downgrade schema."""
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table('status_watchdog')
    with op.batch_alter_table('status_instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_instance_study_uid'))
        batch_op.drop_index(batch_op.f('ix_status_instance_study_date'))
        batch_op.drop_index(batch_op.f('ix_status_instance_series_uid'))
        batch_op.drop_index(batch_op.f('ix_status_instance_patient_id'))
        batch_op.drop_index(batch_op.f('ix_status_instance_modality'))
        batch_op.drop_index(batch_op.f('ix_status_instance_hospital_id'))
        batch_op.drop_index(batch_op.f('ix_status_instance_accession_number'))

    op.drop_table('status_instance')
    op.drop_table('auth_user')
    with op.batch_alter_table('auth_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_audit_study_uid'))
        batch_op.drop_index(batch_op.f('ix_auth_audit_principal'))
        batch_op.drop_index(batch_op.f('ix_auth_audit_at'))

    op.drop_table('auth_audit')
    op.drop_table('auth_assignment')
    with op.batch_alter_table('auth_api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_api_key_name'))

    op.drop_table('auth_api_key')
    # ### end Alembic commands ###

"""Baseline: the schema as it was when migrations were introduced.

Every table is created only when it is missing, so that a database made by ``create_all`` before
migrations existed (some or all of these tables, no ``alembic_version``) is adopted as it is.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations.helpers import table_missing

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every service's tables and their indexes."""
    if table_missing("ingest_instance"):
        op.create_table(
            "ingest_instance",
            sa.Column("sop_instance_uid", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("series_instance_uid", sa.String(), nullable=False),
            sa.Column("object_key", sa.String(), nullable=False),
            sa.Column("sha256", sa.String(), nullable=False),
            sa.Column("size_bytes", sa.Integer(), nullable=False),
            sa.Column("laterality", sa.String(), nullable=True),
            sa.Column("view_position", sa.String(), nullable=True),
            sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("sop_instance_uid"),
        )
        op.create_index("ix_ingest_instance_study_uid", "ingest_instance", ["study_uid"])

    if table_missing("ingest_pacs_poll"):
        op.create_table(
            "ingest_pacs_poll",
            sa.Column("pacs", sa.String(), nullable=False),
            sa.Column("last_poll_date", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("pacs"),
        )

    if table_missing("ingest_study"):
        op.create_table(
            "ingest_study",
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("correlation_id", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("patient_key", sa.String(), nullable=False),
            sa.Column("first_instance_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_instance_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("completion_reason", sa.String(), nullable=True),
            sa.Column("views_seen", sa.JSON(), nullable=True),
            sa.PrimaryKeyConstraint("study_uid"),
        )
        op.create_index("ix_ingest_study_completed_at", "ingest_study", ["completed_at"])
        op.create_index("ix_ingest_study_last_instance_at", "ingest_study", ["last_instance_at"])

    if table_missing("notify_delivery"):
        op.create_table(
            "notify_delivery",
            sa.Column("notification_key", sa.String(), nullable=False),
            sa.Column("event_id", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("correlation_id", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("rule", sa.String(), nullable=False),
            sa.Column("channel", sa.String(), nullable=False),
            sa.Column("recipient", sa.String(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
            sa.Column("owner", sa.String(), nullable=False),
            sa.Column("dead_lettered", sa.Boolean(), nullable=False),
            sa.Column("source_topic", sa.String(), nullable=False),
            sa.Column("payload", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("notification_key"),
        )
        op.create_index("ix_notify_delivery_status", "notify_delivery", ["status"])
        op.create_index("ix_notify_delivery_study_uid", "notify_delivery", ["study_uid"])
        op.create_index("ix_notify_delivery_updated_at", "notify_delivery", ["updated_at"])

    if table_missing("notify_green_study"):
        op.create_table(
            "notify_green_study",
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("inferred_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model_trained", sa.Boolean(), nullable=False),
            sa.Column("disclaimer", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("study_uid"),
        )
        op.create_index("ix_notify_green_study_hospital_id", "notify_green_study", ["hospital_id"])
        op.create_index("ix_notify_green_study_inferred_at", "notify_green_study", ["inferred_at"])

    if table_missing("notify_pacs_results"):
        op.create_table(
            "notify_pacs_results",
            sa.Column("result_key", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("kind", sa.String(), nullable=False),
            sa.Column("sop_instance_uid", sa.String(), nullable=False),
            sa.Column("destination", sa.String(), nullable=False),
            sa.Column("model_version", sa.String(), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("result_key"),
        )
        op.create_index("ix_notify_pacs_results_study_uid", "notify_pacs_results", ["study_uid"])

    if table_missing("notify_provider"):
        op.create_table(
            "notify_provider",
            sa.Column("provider_id", sa.String(), nullable=False),
            sa.Column("display_name", sa.String(), nullable=False),
            sa.Column("hospitals", sa.JSON(), nullable=False),
            sa.Column("webhook_url", sa.String(), nullable=True),
            sa.Column("webhook_secret", sa.String(), nullable=True),
            sa.Column("deidentify", sa.Boolean(), nullable=False),
            sa.Column("kafka", sa.Boolean(), nullable=False),
            sa.Column("deid_seed", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("active", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("provider_id"),
        )

    if table_missing("notify_provider_deid_map"):
        op.create_table(
            "notify_provider_deid_map",
            sa.Column("provider_id", sa.String(), nullable=False),
            sa.Column("deid_study_uid", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("deid_accession_number", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("provider_id", "deid_study_uid"),
        )
        op.create_index("ix_notify_provider_deid_map_study_uid", "notify_provider_deid_map", ["study_uid"])

    if table_missing("notify_provider_delivery"):
        op.create_table(
            "notify_provider_delivery",
            sa.Column("delivery_key", sa.String(), nullable=False),
            sa.Column("delivery_id", sa.String(), nullable=False),
            sa.Column("provider_id", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("channel", sa.String(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("delivery_key"),
        )
        op.create_index("ix_notify_provider_delivery_delivery_id", "notify_provider_delivery", ["delivery_id"])
        op.create_index("ix_notify_provider_delivery_provider_id", "notify_provider_delivery", ["provider_id"])
        op.create_index("ix_notify_provider_delivery_study_uid", "notify_provider_delivery", ["study_uid"])

    if table_missing("status_event"):
        op.create_table(
            "status_event",
            sa.Column("event_id", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("event_type", sa.String(), nullable=False),
            sa.Column("producer", sa.String(), nullable=False),
            sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("payload", sa.JSON(), nullable=True),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index("ix_status_event_study_uid", "status_event", ["study_uid"])

    if table_missing("status_notification"):
        op.create_table(
            "status_notification",
            sa.Column("event_id", sa.String(), nullable=False),
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("rule", sa.String(), nullable=False),
            sa.Column("channel", sa.String(), nullable=False),
            sa.Column("recipient", sa.String(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("detail", sa.String(), nullable=False),
            sa.Column("producer", sa.String(), nullable=False),
            sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index("ix_status_notification_hospital_id", "status_notification", ["hospital_id"])
        op.create_index("ix_status_notification_occurred_at", "status_notification", ["occurred_at"])
        op.create_index("ix_status_notification_status", "status_notification", ["status"])
        op.create_index("ix_status_notification_study_uid", "status_notification", ["study_uid"])

    if table_missing("status_study"):
        op.create_table(
            "status_study",
            sa.Column("study_uid", sa.String(), nullable=False),
            sa.Column("hospital_id", sa.String(), nullable=False),
            sa.Column("accession_number", sa.String(), nullable=False),
            sa.Column("correlation_id", sa.String(), nullable=False),
            sa.Column("progress", sa.String(), nullable=False),
            sa.Column("state", sa.String(), nullable=False),
            sa.Column("status_light", sa.String(), nullable=False),
            sa.Column("triage_light", sa.String(), nullable=True),
            sa.Column("triage_reason", sa.String(), nullable=True),
            sa.Column("failed", sa.Boolean(), nullable=False),
            sa.Column("failure_reason", sa.String(), nullable=True),
            sa.Column("overdue", sa.Boolean(), nullable=False),
            sa.Column("instance_count", sa.Integer(), nullable=False),
            sa.Column("breasts", sa.JSON(), nullable=True),
            sa.Column("derived_views", sa.JSON(), nullable=True),
            sa.Column("quality_flags", sa.JSON(), nullable=True),
            sa.Column("model_name", sa.String(), nullable=True),
            sa.Column("model_version", sa.String(), nullable=True),
            sa.Column("model_trained", sa.Boolean(), nullable=True),
            sa.Column("model_trained_on", sa.String(), nullable=True),
            sa.Column("disclaimer", sa.String(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("study_uid"),
        )
        op.create_index("ix_status_study_hospital_id", "status_study", ["hospital_id"])
        op.create_index("ix_status_study_state", "status_study", ["state"])
        op.create_index("ix_status_study_updated_at", "status_study", ["updated_at"])


def downgrade() -> None:
    """Drop every table of the baseline (their indexes go with them)."""
    op.drop_table("status_study")
    op.drop_table("status_notification")
    op.drop_table("status_event")
    op.drop_table("notify_provider_delivery")
    op.drop_table("notify_provider_deid_map")
    op.drop_table("notify_provider")
    op.drop_table("notify_pacs_results")
    op.drop_table("notify_green_study")
    op.drop_table("notify_delivery")
    op.drop_table("ingest_study")
    op.drop_table("ingest_pacs_poll")
    op.drop_table("ingest_instance")

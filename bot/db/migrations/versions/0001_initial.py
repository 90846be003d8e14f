"""Initial schema: server settings, encrypted keys, quotas and the ledger, generation jobs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes with the models.
SNOWFLAKE = sa.BigInteger()
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("allowed_channel_ids", JSON, nullable=False),
        sa.Column("default_model", sa.String(100), nullable=False),
        sa.Column("default_aspect", sa.String(20), nullable=False),
        sa.Column("default_resolution", sa.String(20), nullable=False),
        sa.Column("default_quality", sa.String(20), nullable=False),
        sa.Column("max_concurrent_per_member", sa.Integer(), nullable=False),
        sa.Column("max_concurrent_per_guild", sa.Integer(), nullable=False),
        sa.Column("max_queued_per_member", sa.Integer(), nullable=False),
        sa.Column("max_queued_per_guild", sa.Integer(), nullable=False),
        sa.Column("mod_log_channel_id", SNOWFLAKE, nullable=True),
        sa.Column("low_balance_threshold", sa.Integer(), nullable=True),
        sa.Column("low_balance_alerted", sa.Boolean(), nullable=False),
        sa.Column("blocked_words", JSON, nullable=False),
        sa.Column("blocked_patterns", JSON, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name="pk_guild_settings"),
    )

    op.create_table(
        "guild_keys",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("masked", sa.String(40), nullable=False),
        sa.Column("set_by", SNOWFLAKE, nullable=False),
        sa.Column("set_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name="pk_guild_keys"),
    )

    op.create_table(
        "quota_settings",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("credits", sa.Integer(), nullable=True),
        sa.Column("period", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name="pk_quota_settings"),
    )
    op.create_table(
        "quota_role_limits",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("role_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "role_id", name="pk_quota_role_limits"),
    )
    op.create_table(
        "quota_member_limits",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("user_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "user_id", name="pk_quota_member_limits"),
    )
    op.create_table(
        "quota_exempt_roles",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("role_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.PrimaryKeyConstraint("guild_id", "role_id", name="pk_quota_exempt_roles"),
    )

    op.create_table(
        "quota_reservations",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("guild_id", SNOWFLAKE, nullable=False),
        sa.Column("user_id", SNOWFLAKE, nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("actual", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("job_id", SNOWFLAKE, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("closed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quota_reservations"),
    )
    op.create_index(
        "ix_quota_reservations_member", "quota_reservations", ["guild_id", "user_id", "created_at"]
    )
    op.create_index("ix_quota_reservations_guild", "quota_reservations", ["guild_id", "created_at"])
    op.create_index("ix_quota_reservations_state", "quota_reservations", ["state", "created_at"])

    op.create_table(
        "quota_ledger",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("guild_id", SNOWFLAKE, nullable=False),
        sa.Column("user_id", SNOWFLAKE, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("reservation_id", SNOWFLAKE, nullable=False),
        sa.Column("job_id", SNOWFLAKE, nullable=True),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quota_ledger"),
    )
    op.create_index("ix_quota_ledger_member", "quota_ledger", ["guild_id", "user_id", "at"])
    op.create_index("ix_quota_ledger_guild", "quota_ledger", ["guild_id", "at"])
    op.create_index("ix_quota_ledger_reservation", "quota_ledger", ["reservation_id"])

    op.create_table(
        "jobs",
        sa.Column("id", ID, nullable=False, autoincrement=True),
        sa.Column("guild_id", SNOWFLAKE, nullable=False),
        sa.Column("channel_id", SNOWFLAKE, nullable=False),
        sa.Column("user_id", SNOWFLAKE, nullable=False),
        sa.Column("application_id", SNOWFLAKE, nullable=True),
        sa.Column("interaction_token", sa.Text(), nullable=True),
        sa.Column("token_expires_at", TIME, nullable=True),
        sa.Column("status_message_id", SNOWFLAKE, nullable=True),
        sa.Column("reply_to_message_id", SNOWFLAKE, nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("reservation_id", SNOWFLAKE, nullable=True),
        sa.Column("hub_generation_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("hub_status", sa.String(40), nullable=True),
        sa.Column("next_poll_at", TIME, nullable=True),
        sa.Column("poll_attempts", sa.Integer(), nullable=False),
        sa.Column("error_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result_urls", JSON, nullable=False),
        sa.Column("delivered_images", sa.Integer(), nullable=False),
        sa.Column("charged_credits", sa.Integer(), nullable=True),
        sa.Column("posted_message_ids", JSON, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("submitted_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("posted_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_due", "jobs", ["status", "next_poll_at"])
    op.create_index("ix_jobs_member", "jobs", ["guild_id", "user_id", "created_at"])
    op.create_index("ix_jobs_guild_status", "jobs", ["guild_id", "status", "created_at"])
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"])
    op.create_index("ix_jobs_hub_generation", "jobs", ["hub_generation_id"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("quota_ledger")
    op.drop_table("quota_reservations")
    op.drop_table("quota_exempt_roles")
    op.drop_table("quota_member_limits")
    op.drop_table("quota_role_limits")
    op.drop_table("quota_settings")
    op.drop_table("guild_keys")
    op.drop_table("guild_settings")

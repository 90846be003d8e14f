"""Member features: per-image Upscale/Vary sources on jobs, members' own defaults and
private results, members' own hub keys and whose key paid for a job, servers allowing them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes with the models.
SNOWFLAKE = sa.BigInteger()
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("source_job_id", SNOWFLAKE, nullable=True))
        batch.add_column(sa.Column("source_action", sa.String(16), nullable=True))
        batch.add_column(sa.Column("source_image", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("key_owner", SNOWFLAKE, nullable=True))
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(
            sa.Column("personal_keys_allowed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_table(
        "member_keys",
        sa.Column("user_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("masked", sa.String(40), nullable=False),
        sa.Column("set_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_member_keys"),
    )
    op.create_table(
        "member_settings",
        sa.Column("guild_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("user_id", SNOWFLAKE, nullable=False, autoincrement=False),
        sa.Column("model", sa.String(100), nullable=True),
        sa.Column("aspect", sa.String(20), nullable=True),
        sa.Column("resolution", sa.String(20), nullable=True),
        sa.Column("quality", sa.String(20), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("visibility", sa.String(10), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "user_id", name="pk_member_settings"),
    )


def downgrade() -> None:
    op.drop_table("member_keys")
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("personal_keys_allowed")
    op.drop_table("member_settings")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("key_owner")
        batch.drop_column("private")
        batch.drop_column("source_image")
        batch.drop_column("source_action")
        batch.drop_column("source_job_id")

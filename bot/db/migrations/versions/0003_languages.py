"""Servers choose the language of their public messages; jobs remember the one they started in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=False, server_default="auto"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("locale")
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("language")

"""Job schedules.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omops.catalog._tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("run_at", sa.String(255), nullable=False),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("next_run", UTCDateTime, nullable=False),
        sa.Column("last_run", UTCDateTime, nullable=True),
        sa.Column("last_task", sa.String(64), nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "name", name="pk_schedules"),
    )
    op.create_index("ix_schedules_next_run", "schedules", ["next_run"])


def downgrade() -> None:
    op.drop_index("ix_schedules_next_run", table_name="schedules")
    op.drop_table("schedules")

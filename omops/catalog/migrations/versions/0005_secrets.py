"""Secrets: values encrypted with OMOPS_SECRET_KEY, per bucket.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omops.catalog._tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("modified", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "name", name="pk_secrets"),
    )


def downgrade() -> None:
    op.drop_table("secrets")

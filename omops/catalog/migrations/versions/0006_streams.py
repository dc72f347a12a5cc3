"""Streams: records with catalog-assigned offsets, and consumer groups' committed offsets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omops.catalog._tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_streams"),
        sa.UniqueConstraint("bucket", "name", name="uq_streams_bucket_name"),
    )
    op.create_table(
        "stream_records",
        sa.Column("stream_id", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("dt", sa.Float(precision=53), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name="fk_stream_records_stream_id_streams",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stream_id", "offset", name="pk_stream_records"),
    )
    op.create_table(
        "stream_groups",
        sa.Column("stream_id", sa.Integer, nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("committed", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
            name="fk_stream_groups_stream_id_streams",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stream_id", "group_name", name="pk_stream_groups"),
    )


def downgrade() -> None:
    op.drop_table("stream_groups")
    op.drop_table("stream_records")
    op.drop_table("streams")

"""Store tables: objects, revisions, tags, parts.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omops.catalog._tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "objects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("store", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("origin", sa.JSON, nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("modified", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_objects"),
        sa.UniqueConstraint("bucket", "store", "name", name="uq_objects_bucket_store_name"),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer, nullable=False),
        sa.Column("revision", sa.String(40), nullable=False),
        sa.Column("parent", sa.String(40), nullable=True),
        sa.Column("base_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("kind_meta", sa.JSON, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revisions"),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
            ondelete="CASCADE",
            name="fk_revisions_object_id_objects",
        ),
        sa.ForeignKeyConstraint(
            ["base_id"], ["revisions.id"], name="fk_revisions_base_id_revisions"
        ),
        sa.UniqueConstraint("object_id", "revision", name="uq_revisions_object_id_revision"),
    )
    op.create_index("ix_revisions_object_id", "revisions", ["object_id"])
    op.create_table(
        "tags",
        sa.Column("object_id", sa.Integer, nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("revision_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("object_id", "tag", name="pk_tags"),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.id"], ondelete="CASCADE", name="fk_tags_object_id_objects"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            ondelete="CASCADE",
            name="fk_tags_revision_id_revisions",
        ),
    )
    op.create_table(
        "parts",
        sa.Column("revision_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("blob", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("revision_id", "position", name="pk_parts"),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["revisions.id"],
            ondelete="CASCADE",
            name="fk_parts_revision_id_revisions",
        ),
    )
    op.create_index("ix_parts_blob", "parts", ["blob"])


def downgrade() -> None:
    op.drop_table("parts")
    op.drop_table("tags")
    op.drop_table("revisions")
    op.drop_table("objects")

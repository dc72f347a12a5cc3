"""Experiment tracking: experiments, runs, events, tracked models.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omops.catalog._tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("bucket", "name", name="uq_experiments_bucket_name"),
    )
    op.create_table(
        "runs",
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("started", UTCDateTime, nullable=False),
        sa.Column("stopped", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("experiment_id", "run", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            ondelete="CASCADE",
            name="fk_runs_experiment_id_experiments",
        ),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=True),
        sa.Column("dt", sa.Float(precision=53), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=True),
        sa.Column("value", sa.Text, nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("user", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            ondelete="CASCADE",
            name="fk_events_experiment_id_experiments",
        ),
    )
    op.create_index("ix_events_experiment_run", "events", ["experiment_id", "run"])
    op.create_index("ix_events_experiment_event", "events", ["experiment_id", "event", "key"])
    op.create_table(
        "tracked_models",
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "model", "experiment_id", name="pk_tracked_models"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            ondelete="CASCADE",
            name="fk_tracked_models_experiment_id_experiments",
        ),
    )


def downgrade() -> None:
    op.drop_table("tracked_models")
    op.drop_index("ix_events_experiment_event", table_name="events")
    op.drop_index("ix_events_experiment_run", table_name="events")
    op.drop_table("events")
    op.drop_table("runs")
    op.drop_table("experiments")

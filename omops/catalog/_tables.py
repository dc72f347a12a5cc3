"""The catalog schema (SQLAlchemy Core). Changed only through a migration."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use UTC-aware datetimes")
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


objects = sa.Table(
    "objects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(64), nullable=False),
    sa.Column("store", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("origin", sa.JSON, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("modified", UTCDateTime, nullable=False),
    sa.UniqueConstraint("bucket", "store", "name", name="uq_objects_bucket_store_name"),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "object_id", sa.Integer, sa.ForeignKey("objects.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("revision", sa.String(40), nullable=False),
    sa.Column("parent", sa.String(40), nullable=True),
    # An append revision holds its own parts plus all parts of base_id.
    sa.Column("base_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("kind_meta", sa.JSON, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.UniqueConstraint("object_id", "revision", name="uq_revisions_object_id_revision"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column(
        "object_id", sa.Integer, sa.ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column(
        "revision_id",
        sa.Integer,
        sa.ForeignKey("revisions.id", ondelete="CASCADE"),
        nullable=False,
    ),
)

parts = sa.Table(
    "parts",
    metadata,
    sa.Column(
        "revision_id",
        sa.Integer,
        sa.ForeignKey("revisions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("blob", sa.String(80), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=True),
)

sa.Index("ix_parts_blob", parts.c.blob)
sa.Index("ix_revisions_object_id", revisions.c.object_id)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    # SHA-256 of the secret part: keys are 32 random bytes, so a fast hash is enough.
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("buckets", sa.JSON, nullable=False),
    sa.Column("note", sa.String(200), nullable=False, server_default=""),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("revoked", UTCDateTime, nullable=True),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(64), nullable=False),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("finished", UTCDateTime, nullable=True),
)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.UniqueConstraint("bucket", "name", name="uq_experiments_bucket_name"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("run", sa.Integer, primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("stopped", UTCDateTime, nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("run", sa.Integer, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=True),
    # Seconds since the epoch (UTC): cheap to write, read and turn into datetime64.
    sa.Column("dt", sa.Float(precision=53), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("key", sa.String(255), nullable=True),
    # JSON text, encoded and decoded with orjson by the tracking code.
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("node", sa.String(255), nullable=True),
    sa.Column("user", sa.String(255), nullable=True),
)
sa.Index("ix_events_experiment_run", events.c.experiment_id, events.c.run)
sa.Index("ix_events_experiment_event", events.c.experiment_id, events.c.event, events.c.key)

tracked_models = sa.Table(
    "tracked_models",
    metadata,
    sa.Column("bucket", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("bucket", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    # What the user wrote ('every 5 minutes') and the cron line it means, in UTC.
    sa.Column("run_at", sa.String(255), nullable=False),
    sa.Column("cron", sa.String(128), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    # The occurrence to fire next; a scheduler claims it by moving it on.
    sa.Column("next_run", UTCDateTime, nullable=False),
    sa.Column("last_run", UTCDateTime, nullable=True),
    sa.Column("last_task", sa.String(64), nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
)
sa.Index("ix_schedules_next_run", schedules.c.next_run)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("bucket", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    # Fernet tokens (encrypted with OMOPS_SECRET_KEY outside the catalog): never plain text.
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("modified", UTCDateTime, nullable=False),
)

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # The offset the next record gets. Producers move it on under the row's lock,
    # so offsets are gapless and become visible in their order.
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.UniqueConstraint("bucket", "name", name="uq_streams_bucket_name"),
)

stream_records = sa.Table(
    "stream_records",
    metadata,
    sa.Column(
        "stream_id", sa.Integer, sa.ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("offset", sa.BigInteger, primary_key=True),
    # Seconds since the epoch (UTC) when the record was appended.
    sa.Column("dt", sa.Float(precision=53), nullable=False),
    # JSON text, encoded and decoded with orjson by omops.catalog.streams.
    sa.Column("record", sa.Text, nullable=False),
)

stream_groups = sa.Table(
    "stream_groups",
    metadata,
    sa.Column(
        "stream_id", sa.Integer, sa.ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("group_name", sa.String(64), primary_key=True),
    # The next offset the group processes: every record before it was processed.
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("committed", UTCDateTime, nullable=False),
)

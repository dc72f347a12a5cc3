"""Bring a catalog database to the newest schema, once, safely under concurrency."""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from omops.catalog._engine import WRITE_OPTION

#: The newest migration; tests check it against the migration scripts.
HEAD = "0003"
_PG_LOCK_KEY = 0x6F6D6F7073  # "omops": serialises concurrent migrations


def current_revision(connection: Connection) -> str | None:
    """The schema revision stored in the database, ``None`` if it has none."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _alembic_config(connection: Connection):  # noqa: ANN202
    from alembic.config import Config  # imported only when a migration runs

    config = Config()
    config.set_main_option("script_location", str(resources.files("omops.catalog") / "migrations"))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, target: str = "head") -> None:
    """Migrate the database to ``target`` unless it is there already."""
    with engine.connect() as probe:
        if target == "head" and current_revision(probe) == HEAD:
            return
        probe.rollback()
    from alembic import command

    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            if target == "head" and current_revision(connection) == HEAD:
                return
            command.upgrade(_alembic_config(connection), target)


def downgrade(engine: Engine, target: str) -> None:
    """Migrate the database down to ``target`` (``base`` removes every table)."""
    from alembic import command

    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            command.downgrade(_alembic_config(connection), target)

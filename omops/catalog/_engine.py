"""Engines for the catalog: SQLite tuned for many processes, PostgreSQL as given."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from omops.errors import ConfigError

#: Execution option that turns a SQLite transaction into BEGIN IMMEDIATE, so two
#: writers queue on the database lock instead of failing on lock upgrade.
WRITE_OPTION = "omops_write"


def normalize_url(url: str) -> URL:
    """Parse a catalog URL; pick psycopg (v3) when PostgreSQL names no driver."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"catalog URL {url!r} is not a database URL; use e.g. "
            "'sqlite:////path/catalog.sqlite' or 'postgresql://user:pw@host/db'"
        ) from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"catalog backend {parsed.get_backend_name()!r} is not supported; use SQLite or PostgreSQL"
        )
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 120})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy's "begin" event below emit BEGIN, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=120000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_engine(url: str) -> Engine:
    """Create the engine for a catalog URL."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)

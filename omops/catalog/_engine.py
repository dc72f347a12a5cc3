"""Engines for the catalog: SQLite tuned for many processes, PostgreSQL as given."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from omops.errors import ConfigError

#: Execution option that turns a SQLite transaction into BEGIN IMMEDIATE, so two
#: writers queue on the database lock instead of failing on lock upgrade.
WRITE_OPTION = "omops_write"
#: Seconds a SQLite connection waits for a lock before "database is locked".
BUSY_TIMEOUT = 120.0


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


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "database is locked" in str(exc) or "database is busy" in str(exc)


def _use_wal(dbapi_connection: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """Put the database in WAL mode (kept in the file), waiting out other connections.

    Switching the journal mode needs an exclusive lock, and SQLite answers
    SQLITE_BUSY at once instead of calling the busy handler when another
    process holds one: several processes opening a new catalog together
    would fail. Most connections find WAL set already and switch nothing.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event below emit BEGIN, not pysqlite.
    dbapi_connection.isolation_level = None
    # The busy timeout first, so every statement below waits for locks.
    dbapi_connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    _use_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT})
    event.listen(engine, "connect", _on_connect)

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

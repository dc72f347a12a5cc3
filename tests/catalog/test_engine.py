"""Catalog engines: SQLite connections that many processes open at once."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from omops.catalog._engine import _use_wal, create_engine


@pytest.fixture
def held(tmp_path):
    """A new database in rollback-journal mode whose write lock another connection holds."""
    path = tmp_path / "catalog.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    yield path, holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def test_opening_waits_for_a_lock_instead_of_failing_to_switch_to_wal(held):
    # Switching to WAL needs an exclusive lock, and SQLite reports "database is
    # locked" at once, without waiting, while another process holds one.
    path, holder = held
    engine = create_engine(f"sqlite:///{path}")
    release = threading.Timer(0.5, holder.execute, ["COMMIT"])
    start = time.monotonic()
    release.start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 120_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        release.join()
        engine.dispose()
    assert time.monotonic() - start >= 0.4


def test_switching_to_wal_gives_up_with_the_sqlite_error_after_its_timeout(held):
    path, _holder = held
    waiting = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        start = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            _use_wal(waiting, timeout=0.3)
        assert 0.2 <= time.monotonic() - start < 5
    finally:
        waiting.close()

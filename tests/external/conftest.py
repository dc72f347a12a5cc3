"""Fixtures: the secret key, a test database per SQL backend, a local HTTP file server.

MariaDB tests need the server that ``scripts/test.sh`` starts (OMOPS_TEST_MARIADB),
as PostgreSQL tests need OMOPS_TEST_POSTGRES: without it they fail, not skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from omops.omega import Omega

from .support import (
    Database,
    FileServer,
    mariadb_database,
    postgres_database,
    sqlite_database,
    write_files,
)

SQL_BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh OMOPS_SECRET_KEY for every test (and the processes it starts)."""
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("OMOPS_SECRET_KEY", key)
    return key


@pytest.fixture
def om(tmp_path: Path) -> Iterator[Omega]:
    """An Omega on a SQLite catalog: these kinds keep nothing but a definition there
    (the catalog backends are covered by tests/test_secrets.py and the store tests)."""
    instance = Omega(catalog=f"sqlite:///{tmp_path / 'catalog.sqlite'}", blobs=str(tmp_path / "b"))
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def mariadb_admin_url() -> str:
    url = os.environ.get("OMOPS_TEST_MARIADB")
    if not url:
        pytest.fail(
            "OMOPS_TEST_MARIADB is not set: run the tests with `bash scripts/test.sh`, "
            "which starts MariaDB, or deselect them with -m 'not mariadb'"
        )
    return url


def _open(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        found = sqlite_database(tmp_path)
        yield found
        found.engine.dispose()
    elif request.param == "postgres":
        with postgres_database(request.getfixturevalue("postgres_url")) as found:
            yield found
    else:
        with mariadb_database(request.getfixturevalue("mariadb_admin_url")) as found:
            yield found


@pytest.fixture(params=SQL_BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An ``orders`` table on SQLite, PostgreSQL and MariaDB."""
    yield from _open(request, tmp_path)


@pytest.fixture(params=SQL_BACKENDS[1:])
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The ``orders`` table on PostgreSQL and MariaDB: servers with users and passwords."""
    yield from _open(request, tmp_path)


@pytest.fixture
def mariadb(mariadb_admin_url: str) -> Iterator[Database]:
    """The MariaDB database alone: its user has a real password."""
    with mariadb_database(mariadb_admin_url) as found:
        yield found


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "www"
    folder.mkdir()
    write_files(folder)
    return folder


@pytest.fixture
def http(files: Path) -> Iterator[FileServer]:
    with FileServer(files) as server:
        yield server

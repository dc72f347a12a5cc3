"""Shared fixtures: an Omega on each catalog backend (SQLite file, real PostgreSQL).

PostgreSQL tests need the server that ``scripts/test.sh`` starts (it exports
``OMOPS_TEST_POSTGRES``). Without it they fail, not skip: deselect them
explicitly with ``-m "not postgres"`` when working without the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

import omops
from omops.catalog import Catalog
from omops.omega import Omega

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch) -> Iterator[None]:
    """Never touch the user's ~/.omops: every test gets its own OMOPS_HOME."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("OMOPS_HOME", str(home))
    for var in (
        "OMOPS_CATALOG",
        "OMOPS_BLOBS",
        "OMOPS_BROKER",
        "OMOPS_BUCKET",
        "OMOPS_SECRET_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    omops.reset()
    yield
    omops.reset()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("OMOPS_TEST_POSTGRES")
    if not url:
        pytest.fail(
            "OMOPS_TEST_POSTGRES is not set: run the tests with `bash scripts/test.sh`, "
            "which starts PostgreSQL, or deselect them with -m 'not postgres'"
        )
    return url


def _admin_engine(postgres_admin_url: str) -> sa.Engine:
    return sa.create_engine(
        postgres_admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )


@contextmanager
def _database(postgres_admin_url: str, template: str | None = None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(postgres_admin_url)
    with admin.connect() as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
    base, _, _ = postgres_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated once per session, copied for each test (much faster)."""
    with _database(postgres_admin_url) as url:
        catalog = Catalog(url)
        catalog.engine()  # an empty database: creates the schema at head
        catalog.close()
        yield url.rpartition("/")[2]


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (no schema)."""
    with _database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def migrated_postgres_url(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database with the catalog schema at head."""
    with _database(postgres_admin_url, template=postgres_template) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def catalog_url(request, tmp_path) -> str:
    """A catalog URL on each backend (PostgreSQL already migrated to head)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("migrated_postgres_url")


@pytest.fixture(params=BACKENDS)
def empty_catalog_url(request, tmp_path) -> str:
    """A catalog URL on each backend with no schema at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def om(catalog_url: str, tmp_path) -> Iterator[Omega]:
    """An Omega instance on each catalog backend with a local blob folder."""
    instance = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"))
    yield instance
    instance.catalog.close()


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """The type of ``X`` in each call of ``SklearnPlugin.perform`` (what a model was given)."""
    from omops.plugins.sklearn import SklearnPlugin

    types: list[type] = []
    perform = SklearnPlugin.perform

    def recording(self: SklearnPlugin, obj: Any, action: str, X: Any, y: Any, **kw: Any) -> Any:  # noqa: N803
        types.append(type(X))
        return perform(self, obj, action, X, y, **kw)

    monkeypatch.setattr(SklearnPlugin, "perform", recording)
    return types

"""Fixtures for the scripts suite: real package builds, real environments, real workers.

* ``wheels`` -- the test scripts (see :mod:`.support`), each built once per
  session into a wheel, and ``wheelhouse``, a folder with the wheel of their
  one dependency. pip never reaches an index here: every test runs with
  ``PIP_NO_INDEX=1`` and ``PIP_FIND_LINKS=<wheelhouse>``.
* ``om`` -- an Omega on the test's own home (local executor): the script
  environments of a test are installed under that home.
* ``celery`` -- a Celery cluster per broker (RabbitMQ with a SQLite catalog,
  Redis with PostgreSQL), each with one ``om runtime worker`` of its own
  (concurrency 2) on a queue of this session, started with the same pip
  settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from runtime.support import SESSION, Cluster, Worker

from omops.omega import Omega
from omops.plugins.package import Wheel, build_wheel

from .support import (
    ECHO,
    EXITS,
    NOT_JSON,
    RAISES,
    USES_DEP,
    WRITES,
    make_dependency,
    make_package,
)

SCRIPT_QUEUE = f"omops-scripts-{SESSION}"
SOURCES = {
    "echo": (ECHO, ()),
    "raises": (RAISES, ()),
    "uses-dep": (USES_DEP, ("omops-test-dep>=0.1",)),
    "writes": (WRITES, ()),
    "not-json": (NOT_JSON, ()),
    "exits": (EXITS, ()),
}


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the wheel of the scripts' dependency (what PIP_FIND_LINKS names)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(make_dependency(tmp_path_factory.mktemp("dep-src"))).save(folder)
    return folder


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Wheel]:
    """Each test script built once: name -> Wheel."""
    root = tmp_path_factory.mktemp("script-src")
    return {
        name: build_wheel(make_package(root, f"script-{name}", code, deps=deps))
        for name, (code, deps) in SOURCES.items()
    }


@pytest.fixture(autouse=True)
def _pip_offline(monkeypatch: pytest.MonkeyPatch, wheelhouse: Path) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))


@pytest.fixture
def om() -> Iterator[Omega]:
    """An Omega on this test's home (OMOPS_HOME, set for every test), local executor."""
    instance = Omega(home=os.environ["OMOPS_HOME"])
    yield instance
    instance.close()


def _service_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.fail(f"{variable} is not set: source /work/dev-services.env or run scripts/test.sh")
    return url


def _cluster(name: str, home: Path, catalog: str, broker: str, wheelhouse: Path) -> Cluster:
    cluster = Cluster(
        name,
        home=home,
        catalog=catalog,
        blobs=str(home / "blobs"),
        broker=broker,
        queue=SCRIPT_QUEUE,
        gpu=f"{SCRIPT_QUEUE}-gpu",
    )
    env = cluster.env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    worker = Worker(env, [SCRIPT_QUEUE], concurrency=2, log=home / "worker.log")
    cluster.workers.append(worker)
    cluster.extra_queues.add(SCRIPT_QUEUE)
    worker.wait_ready(cluster.base.runtime.require(SCRIPT_QUEUE))
    return cluster


@pytest.fixture(scope="session")
def script_rabbitmq(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("scripts-rabbitmq")
    cluster = _cluster(
        "celery-rabbitmq",
        home,
        f"sqlite:///{home / 'catalog.sqlite'}",
        _service_url("OMOPS_TEST_BROKER"),
        wheelhouse,
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def script_postgres(postgres_admin_url: str) -> Iterator[str]:
    name = f"sc_{SESSION}"
    admin = sa.create_engine(
        postgres_admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def script_redis(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, script_postgres: str
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("scripts-redis")
    cluster = _cluster(
        "celery-redis", home, script_postgres, _service_url("OMOPS_TEST_REDIS"), wheelhouse
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(
    params=["script_rabbitmq", pytest.param("script_redis", marks=pytest.mark.postgres)],
    ids=["rabbitmq", "redis"],
)
def celery(request: pytest.FixtureRequest) -> Cluster:
    """Each Celery cluster with its script worker."""
    return request.getfixturevalue(request.param)

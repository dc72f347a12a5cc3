"""Fixtures for the runtime suite: one contract, three executors.

``cluster`` is parametrized over

* ``local`` -- no broker: tasks run in this process, batches in a process pool;
* ``celery-rabbitmq`` -- ``OMOPS_TEST_BROKER`` (RabbitMQ), SQLite catalog file;
* ``celery-redis`` -- ``OMOPS_TEST_REDIS`` (Redis), PostgreSQL catalog.

The Celery clusters run real ``om runtime worker`` processes that share the
catalog and blob folder with the test process. Workers are started once per
session and killed (their whole process group) at the end.

Queues are private to the test session: the suite's workers consume
``omops-test-<session>`` (standing in for ``default``) and
``omops-test-<session>-gpu``, so stale messages from earlier or concurrent runs
on the same broker never reach them, and the queues are deleted at the end.
Each test works in a bucket of its own, so tests share workers but not objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from omops.omega import Omega
from omops.runtime import Runtime

from .support import GPU, QUEUE, SESSION, Cluster, make_stats

EXECUTORS = [
    "local",
    "celery-rabbitmq",
    pytest.param("celery-redis", marks=pytest.mark.postgres),
]


def _service_url(variable: str, what: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.fail(
            f"{variable} is not set: run the tests with `bash scripts/test.sh`, which starts "
            f"{what}, or `source` the environment it prints"
        )
    return url


def _celery_cluster(name: str, home: Path, *, catalog: str, broker: str) -> Iterator[Cluster]:
    cluster = Cluster(name, home=home, catalog=catalog, blobs=str(home / "blobs"), broker=broker)
    try:
        cluster.start_worker(QUEUE, GPU, concurrency=2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("local")
    cluster = Cluster(
        "local",
        home=home,
        catalog=f"sqlite:///{home / 'catalog.sqlite'}",
        blobs=str(home / "blobs"),
        broker=None,
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def rabbitmq_cluster(tmp_path_factory) -> Iterator[Cluster]:
    broker = _service_url("OMOPS_TEST_BROKER", "RabbitMQ")
    home = tmp_path_factory.mktemp("rabbitmq")
    yield from _celery_cluster(
        "celery-rabbitmq", home, catalog=f"sqlite:///{home / 'catalog.sqlite'}", broker=broker
    )


@pytest.fixture(scope="session")
def session_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database for the whole session (the Redis cluster's catalog)."""
    name = f"rt_{SESSION}"
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
def redis_cluster(tmp_path_factory, session_postgres_url: str) -> Iterator[Cluster]:
    broker = _service_url("OMOPS_TEST_REDIS", "Redis")
    home = tmp_path_factory.mktemp("redis")
    yield from _celery_cluster("celery-redis", home, catalog=session_postgres_url, broker=broker)


@pytest.fixture(scope="session", params=EXECUTORS)
def cluster(request) -> Cluster:
    """Each executor in turn: local, Celery on RabbitMQ, Celery on Redis."""
    fixture = {
        "local": "local_cluster",
        "celery-rabbitmq": "rabbitmq_cluster",
        "celery-redis": "redis_cluster",
    }[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture
def om(cluster: Cluster) -> Omega:
    """The cluster's Omega in a bucket of this test's own."""
    return cluster.omega()


@pytest.fixture
def rt(om: Omega, cluster: Cluster) -> Runtime:
    """``om.runtime`` on the queue the cluster's workers consume (locally: no label)."""
    return om.runtime if cluster.broker is None else om.runtime.require(cluster.queue)


@pytest.fixture
def stats(om: Omega) -> pd.DataFrame:
    """Dataset ``stats`` in the test's bucket; returns the frame."""
    df = make_stats()
    om.datasets.put(df, "stats", append=False)
    return df

"""Fixtures for the framework plugins: a local store, a Celery cluster and a served store.

* ``fw_local`` -- a local cluster (SQLite catalog, no broker); ``om`` is its
  Omega in a bucket of the test's own;
* ``fw_celery`` -- real ``om runtime worker`` processes on RabbitMQ
  (``OMOPS_TEST_BROKER``), importing each framework on first use;
* ``runtime_om`` -- each of the two in turn (parametrized);
* ``served`` -- ``om runtime serve`` on ``fw_local``'s catalog and blobs: a
  model put through ``om`` is served at once (``Omops-Bucket`` names the bucket).

Every test here is marked ``frameworks``; ``scripts/test.sh`` runs them in a
pytest process of their own, beside the rest of the suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runtime.support import GPU, QUEUE, TESTS, Cluster
from server.support import Server

from omops.omega import Omega

HERE = Path(__file__).resolve().parent
#: The example plugin package is installed by its test, never imported from here.
collect_ignore = ["plugin_example"]
#: No traffic but loopback: MLflow's usage telemetry off, in this process and its children.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
COLUMNS = ["a", "b", "c"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.frameworks)


def xy(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Three float features and a binary target (``a + b > 0``)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=COLUMNS)  # noqa: N806
    return X, (X["a"] + X["b"] > 0).astype("int64").rename("y")


@pytest.fixture(scope="session")
def quiet_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def fw_local(tmp_path_factory, quiet_env) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("fw-local")
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
def fw_celery(tmp_path_factory, quiet_env) -> Iterator[Cluster]:
    broker = os.environ.get("OMOPS_TEST_BROKER")
    if not broker:
        pytest.fail("OMOPS_TEST_BROKER is not set: run the tests with `bash scripts/test.sh`")
    home = tmp_path_factory.mktemp("fw-celery")
    cluster = Cluster(
        "celery-rabbitmq",
        home=home,
        catalog=f"sqlite:///{home / 'catalog.sqlite'}",
        blobs=str(home / "blobs"),
        broker=broker,
    )
    try:
        # one pool process: each framework is imported once, on its first task
        cluster.start_worker(QUEUE, GPU, concurrency=1)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def om(fw_local: Cluster) -> Omega:
    """A local Omega in a bucket of this test's own."""
    return fw_local.omega()


@pytest.fixture(params=["local", "celery"])
def runtime_om(request) -> tuple[Omega, object]:
    """``(om, runtime)`` on each executor: local, and Celery with real workers."""
    cluster = request.getfixturevalue("fw_local" if request.param == "local" else "fw_celery")
    om = cluster.omega()
    runtime = om.runtime if cluster.broker is None else om.runtime.require(cluster.queue)
    return om, runtime


@pytest.fixture(scope="session")
def served(fw_local: Cluster) -> Iterator[Server]:
    """``om runtime serve`` on the local cluster's store (tests/ on its path, for factories)."""
    path = os.environ.get("PYTHONPATH")
    with Server(
        fw_local.home,
        OMOPS_CATALOG=fw_local.catalog,
        OMOPS_BLOBS=fw_local.blobs,
        PYTHONPATH=os.pathsep.join([str(TESTS), *([path] if path else [])]),
        **QUIET,
    ) as server:
        yield server


def spy_lane(monkeypatch: pytest.MonkeyPatch, plugin: type) -> list[str]:
    """The actions ``plugin``'s array lane performs from now on (its ``perform_array`` calls)."""
    seen: list[str] = []
    original = plugin.perform_array

    def spy(self, obj, action, X):  # noqa: N803
        seen.append(action)
        return original(self, obj, action, X)

    monkeypatch.setattr(plugin, "perform_array", spy)
    return seen

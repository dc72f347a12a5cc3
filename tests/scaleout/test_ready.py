"""``/health`` is liveness (no I/O); ``/ready`` asks the catalog, blobs and broker.

The services this test stops are its own (PostgreSQL, Redis, moto started for
it through scripts/services.sh in a private run dir), never the shared ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from omops.blobs import Blobs
from omops.omega import Omega
from omops.server import create_app
from omops.server.routers.meta import READY_TIMEOUT, WORKER_HEADER

from .conftest import S3
from .support import Services


@pytest.fixture
def services() -> Iterator[Services]:
    own = Services()
    try:
        yield own
    finally:
        own.close()


def _local(app) -> TestClient:  # noqa: ANN001
    return TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))


def test_ready_reports_each_dependency_and_503_while_one_is_down(
    services: Services, s3: S3
) -> None:
    env = services.start("postgres", "redis", "moto")
    # The blob store is this test's own moto; its bucket made there. (The endpoint
    # as an option: fsspec reuses filesystems made with the same options, and one
    # made by another test with the variables only would reach the shared moto.)
    own = S3(env["OMOPS_TEST_S3"], s3.bucket)
    own.fs().mkdir(own.bucket)
    blobs = Blobs(own.url(), endpoint_url=own.endpoint)
    om = Omega(catalog=env["OMOPS_TEST_POSTGRES"], blobs=blobs, broker=env["OMOPS_TEST_REDIS"])
    om.datasets.put({"a": 1}, "conf")
    with _local(create_app(om)) as client:
        answer = client.get("/ready")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ready"
        assert {name: state["ok"] for name, state in body["checks"].items()} == {
            "catalog": True,
            "blobs": True,
            "broker": True,
        }
        assert answer.headers[WORKER_HEADER].endswith(f":{os.getpid()}")

        services.stop("redis")
        answer = client.get("/ready")
        assert answer.status_code == 503, answer.text
        checks = answer.json()["checks"]
        assert checks["catalog"]["ok"] and checks["blobs"]["ok"]
        assert not checks["broker"]["ok"] and checks["broker"]["error"]
        assert client.get("/health").status_code == 200  # alive all the same

        services.stop("moto")
        begin = time.monotonic()
        answer = client.get("/ready")
        assert time.monotonic() - begin < READY_TIMEOUT + 2  # bounded, however S3 retries
        checks = answer.json()["checks"]
        assert answer.status_code == 503
        assert checks["catalog"]["ok"] and not checks["blobs"]["ok"]

        om.catalog.close()  # (its pooled connections closed while the server is up)
        services.stop("postgres")
        answer = client.get("/ready")
        checks = answer.json()["checks"]
        assert answer.status_code == 503 and answer.json()["status"] == "unready"
        assert [name for name, state in checks.items() if not state["ok"]] == [
            "catalog",
            "blobs",
            "broker",
        ]
        for state in checks.values():
            assert "guest" not in state["error"] and "omops@" not in state["error"]
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    om.catalog.close()


def test_ready_without_a_broker(tmp_path: Path) -> None:
    om = Omega(home=tmp_path)
    with _local(create_app(om)) as client:
        body = client.get("/ready").json()
        assert body["status"] == "ready"
        assert body["checks"]["broker"]["note"].startswith("no broker")
    om.catalog.close()


def test_health_does_no_io(tmp_path: Path) -> None:
    """A catalog nobody answers for (nothing listens on port 1): alive, not ready."""
    om = Omega(catalog="postgresql://nobody:pw@127.0.0.1:1/none", blobs=str(tmp_path))
    with _local(create_app(om)) as client:
        assert client.get("/health").json() == {"status": "ok", "version": "0.1.0"}
        answer = client.get("/ready")
        assert answer.status_code == 503
        error = answer.json()["checks"]["catalog"]["error"]
        assert error and ":pw@" not in error

"""Fixtures of the jobs suite: the runtime suite's clusters (local, Celery on RabbitMQ and Redis)."""

from __future__ import annotations

import pytest
from runtime.conftest import (  # noqa: F401 - fixtures, shared with the runtime suite
    cluster,
    local_cluster,
    rabbitmq_cluster,
    redis_cluster,
    session_postgres_url,
)
from runtime.support import Cluster

from omops.omega import Omega
from omops.runtime import Runtime


@pytest.fixture
def cluster_om(cluster: Cluster) -> Omega:  # noqa: F811 - the imported fixture
    """The cluster's Omega in a bucket of this test's own."""
    return cluster.omega()


@pytest.fixture
def crt(cluster_om: Omega, cluster: Cluster) -> Runtime:  # noqa: F811
    """``om.runtime`` on the queue the cluster's workers consume (locally: no label)."""
    return (
        cluster_om.runtime if cluster.broker is None else cluster_om.runtime.require(cluster.queue)
    )

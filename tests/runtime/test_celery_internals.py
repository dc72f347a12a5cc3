"""What ``omops/runtime/_celery_rpc.py`` relies on in Celery, checked loudly.

omops keeps its few uses of Celery internals in that one module. If a Celery
release renames or removes what they touch, these tests fail with a message
naming the module to fix, instead of the runtime slowing down or hanging.
"""

from __future__ import annotations

import os
import time

import psutil
from celery.backends import redis as redis_backend
from celery.backends.rpc import ResultConsumer, RPCBackend

from omops.omega import Omega
from omops.runtime._celery_rpc import kept_replies_backend

from .support import QUEUE, Cluster

FIX = "a Celery change broke omops/runtime/_celery_rpc.py: "


def test_the_attributes_it_uses_exist() -> None:
    from omops.runtime.celery_executor import make_app

    with make_app("amqp://guest:guest@127.0.0.1:9//") as app:  # no connection is made
        backend = app.backend
        assert isinstance(backend, RPCBackend)
        for name in ("on_result_fulfilled", "on_task_call", "binding", "as_uri"):
            assert hasattr(backend, name), f"{FIX}RPCBackend.{name} is gone"
        consumer = getattr(backend, "result_consumer", None)
        assert isinstance(consumer, ResultConsumer), f"{FIX}RPCBackend.result_consumer is gone"
        for name in ("_consumer", "_connection", "on_message", "drain_events", "stop"):
            assert hasattr(consumer, name), f"{FIX}rpc ResultConsumer.{name} is gone"
    assert hasattr(redis_backend.ResultConsumer, "_pubsub"), f"{FIX}redis ResultConsumer._pubsub"
    from kombu import Consumer

    assert hasattr(Consumer, "consuming_from"), f"{FIX}kombu Consumer.consuming_from is gone"
    assert issubclass(kept_replies_backend(), RPCBackend)


def _connections_to(port: int) -> int:
    me = psutil.Process(os.getpid())
    return sum(1 for c in me.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


def test_replies_keep_their_queue_and_close_with_the_omega(rabbitmq_cluster: Cluster) -> None:
    cluster = rabbitmq_cluster
    om = Omega(catalog=cluster.catalog, blobs=cluster.blobs, broker=cluster.broker)
    port = int(cluster.broker.rsplit(":", 1)[1].split("/")[0])
    before = _connections_to(port)
    rt = om.runtime.require(QUEUE)
    first = rt.ping(1)
    assert first.get(timeout=60)["pong"] == 1
    backend = rt.executor.app.backend
    consumer = backend.result_consumer
    assert consumer._consumer.consuming_from(backend.binding), (
        f"{FIX}the reply queue is no longer consumed after a result (KeptRepliesBackend)"
    )
    later = rt.ping(2)
    deadline = time.monotonic() + 60
    while later.status != "SUCCESS":  # never waited on: the status drains the replies
        assert time.monotonic() < deadline, f"{FIX}drain_replies did not see a finished task"
        time.sleep(0.05)
    assert later.get(timeout=5)["pong"] == 2
    assert _connections_to(port) > before
    om.close()
    assert _connections_to(port) <= before, f"{FIX}close_app left broker connections open"

"""The two places omops relies on Celery internals, kept together in one module.

Both concern the ``rpc://`` result backend (RabbitMQ), and both are checked by
``tests/runtime/test_celery_internals.py``, which fails with a message naming
this module when a Celery release changes what they use. What they buy is in
``bench/RESULTS.md`` (runtime: Celery round trip).

* :func:`kept_replies_backend`: Celery's own backend stops consuming the reply
  queue after each result and declares the queue again before the next send:
  a declare, a consume and a cancel per task, each a broker round trip. This
  subclass keeps consuming. Uses ``ResultConsumer._consumer`` and
  ``Consumer.consuming_from``.
* :func:`close_app`: Celery closes neither the reply consumers' connections
  (one per thread that waited for a result) nor its producer pool when an
  app is closed. Uses ``ResultConsumer._connection`` (rpc://) and
  ``ResultConsumer._pubsub`` (redis://).
* :func:`drain_replies`: once a process waited for any result, replies sit in
  its consuming connection until drained; reading ``state`` alone would say
  PENDING for ever. Uses ``ResultConsumer._connection``, ``on_message`` and
  ``drain_events``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["close_app", "drain_replies", "kept_replies_backend"]


def kept_replies_backend() -> type:
    """Celery's ``rpc://`` backend, minus three broker round trips per task."""
    from celery.backends.rpc import RPCBackend

    class KeptRepliesBackend(RPCBackend):
        def on_result_fulfilled(self, result: Any) -> None:
            pass  # keep consuming: the reply queue lives on for the next task

        def on_task_call(self, producer: Any, task_id: str) -> None:
            consumer = self.result_consumer._consumer
            if consumer is not None and consumer.consuming_from(self.binding):
                return
            super().on_task_call(producer, task_id)

    return KeptRepliesBackend


def drain_replies(async_result: Any, on_message: Callable[[dict[str, Any]], None]) -> None:
    """rpc://: hand the reply messages that arrived to ``on_message``, without waiting."""
    backend = async_result.backend
    consumer = getattr(backend, "result_consumer", None)
    if backend.as_uri() != "rpc://" or getattr(consumer, "_connection", None) is None:
        return
    previous, consumer.on_message = consumer.on_message, on_message
    try:
        for _ in range(10_000):  # each call handles what one read brings
            consumer.drain_events(timeout=0.001)
    except TimeoutError:  # nothing more has arrived
        pass
    finally:
        consumer.on_message = previous


def close_app(app: Any, backends: Iterable[Any]) -> None:
    """Close ``app``'s broker connections: the reply consumers of ``backends``, the pool."""
    for backend in backends:
        consumer = getattr(backend, "result_consumer", None)
        pubsub = getattr(consumer, "_pubsub", None)  # redis:// waits on a pubsub
        if pubsub is not None:
            consumer._pubsub = None  # results collected later must not reconnect it
            pubsub.close()
        if getattr(consumer, "_connection", None) is not None:  # rpc:// consumes on one
            try:
                consumer.stop()
            except Exception:  # noqa: BLE001 - closing: a dead connection is fine
                pass
        client = getattr(backend, "client", None)  # redis://: results are read over a pool
        if client is not None:
            client.connection_pool.disconnect()
    # (The producer pool is kombu's, shared by every app on the same broker URL
    # in this process: it stays open.)
    app.close()

"""The Celery executor: tasks as JSON messages to workers over RabbitMQ or Redis.

Workers read everything by name from the catalog and blobs of their own
configuration; a message carries the task name, its JSON payload and the
bucket. Tasks are acknowledged late and re-queued when a worker dies, so a
killed worker's task runs again on another worker instead of being lost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import orjson

from omops.config import load_settings
from omops.errors import ConfigError, NotFound, TaskFailed, TaskTimeout
from omops.omega import Omega
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import FAILURE, PENDING, STARTED, SUCCESS, TaskResult, failure_of
from omops.runtime.tasks import execute

__all__ = ["CeleryExecutor", "CeleryResult", "make_app", "run_worker"]

TASK_NAME = "omops.run"
_KEPT_RESULTS = 1000
_apps: dict[str, Any] = {}
_apps_lock = threading.Lock()
_worker_omegas: dict[str, Omega] = {}
_worker_lock = threading.Lock()


def _backend_for(broker: str) -> str:
    # Redis stores results where any client can read them; with RabbitMQ,
    # results travel back to the caller over AMQP (rpc://), the fastest path.
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


def _kept_replies_backend() -> type:
    """Celery's ``rpc://`` backend, minus three broker round trips per task.

    Celery stops consuming the reply queue after each result, so the broker
    deletes that auto-delete queue, and it declares the queue again before
    the next send: a declare, a consume and a cancel per task, each waiting
    for the broker (about 1 ms of a round trip here, bench/runtime.py). This
    backend keeps consuming; while it does, the queue exists and is not
    declared again. Replies nobody waits for yet are buffered as Celery
    buffers them (bounded), and handed to a later ``get()``.
    """
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


def _worker_omega(bucket: str) -> Omega:
    """The worker's Omega for ``bucket``: one catalog and blob store for all buckets.

    (An Omega per bucket would open a catalog engine, with its pool of
    database connections, for every bucket a worker ever served.)
    """
    with _worker_lock:
        om = _worker_omegas.get(bucket)
        if om is None:
            base = next(iter(_worker_omegas.values()), None) or Omega(settings=load_settings())
            om = _worker_omegas[bucket] = base if base.bucket == bucket else base[bucket]
        return om


#: A task's result travels as one JSON text under this key. Celery makes a
#: (length-limited, but still item by item) repr of every result for its log
#: line, ~2.5 µs per list item: a string it cuts short at once.
_PACKED = "omops.json"


def _pack(value: Any) -> dict[str, str]:
    return {_PACKED: orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()}


def _unpack(value: Any) -> Any:
    """A task's result; a group's or chord's list of results, each unpacked."""
    if _is_packed(value):
        return orjson.loads(value[_PACKED])
    if isinstance(value, list) and value and all(_is_packed(v) for v in value):
        return [orjson.loads(v[_PACKED]) for v in value]
    return value


def _is_packed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and _PACKED in value


def _run(self: Any, *args: Any) -> Any:
    """The one Celery task: ``(message)`` or, in a chain/chord, ``(previous, message)``."""
    previous, message = (None, args[0]) if len(args) == 1 else (_unpack(args[0]), args[1])
    om = _worker_omega(message.get("bucket") or "default")
    try:
        return _pack(execute(om, message["task"], message["payload"], previous))
    except Exception as exc:
        raise failure_of(exc) from None


def make_app(broker: str) -> Any:
    """The Celery app for a broker URL (one per URL and process)."""
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError(
            "OMOPS_BROKER is set but Celery is not installed: pip install 'omops[celery]'"
        ) from None
    with _apps_lock:
        app = _apps.get(broker)
        if app is not None:
            return app
        backend = _backend_for(broker)
        app = Celery(
            "omops",
            broker=broker,
            backend=_kept_replies_backend() if backend == "rpc://" else backend,
            set_as_current=False,
        )
        app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            task_default_queue="default",
            task_create_missing_queues=True,
            task_track_started=True,
            result_expires=24 * 3600,
            broker_connection_retry_on_startup=True,
            worker_hijack_root_logger=False,
            worker_send_task_events=False,
        )
        app.task(name=TASK_NAME, bind=True)(_run)
        _apps[broker] = app
        return app


def _message(call: TaskCall) -> dict[str, Any]:
    return {"task": call.task, "payload": call.payload, "bucket": call.bucket}


def _raise_failure(exc: BaseException) -> None:
    if isinstance(exc, TaskFailed):
        raise exc
    raise failure_of(exc)


_progress: OrderedDict[str, str] = OrderedDict()  # task id -> last state short of ready
_progress_lock = threading.Lock()


def _record_progress(meta: dict[str, Any]) -> None:
    """Keep STARTED/RETRY states that arrive as rpc:// replies (Celery drops them)."""
    task_id, state = meta.get("task_id"), meta.get("status")
    if not task_id or not state:
        return
    with _progress_lock:
        if state in ("SUCCESS", "FAILURE", "REVOKED"):
            _progress.pop(task_id, None)
            return
        _progress[task_id] = state
        while len(_progress) > _KEPT_RESULTS:
            _progress.popitem(last=False)


def _drain_replies(async_result: Any) -> None:
    """rpc://: handle the reply messages that arrived, without waiting for more.

    Once a process has waited for any result, its reply queue is consumed and
    replies sit in that connection until drained; reading ``state`` alone
    would then say PENDING for ever, even for a finished task.
    """
    backend = async_result.backend
    consumer = getattr(backend, "result_consumer", None)
    if backend.as_uri() != "rpc://" or getattr(consumer, "_connection", None) is None:
        return
    previous, consumer.on_message = consumer.on_message, _record_progress
    try:
        for _ in range(10_000):  # each call handles what one read brings
            consumer.drain_events(timeout=0.001)
    except TimeoutError:  # nothing more has arrived
        pass
    finally:
        consumer.on_message = previous


def _state_of(async_result: Any) -> str:
    state = async_result.state
    if state == PENDING:
        with _progress_lock:
            state = _progress.get(async_result.id, PENDING)
    return {"RETRY": STARTED, "RECEIVED": PENDING, "REVOKED": FAILURE}.get(state, state)


class CeleryResult(TaskResult):
    """A task (or group, or chain) running on Celery workers."""

    def __init__(self, async_result: Any) -> None:
        self._result = async_result
        self.id = async_result.id

    @property
    def status(self) -> str:
        _drain_replies(self._result)
        if not hasattr(self._result, "results"):
            return _state_of(self._result)
        # A group: failed as soon as one call failed (get() raises then), done when all are.
        states = [_state_of(r) for r in self._result.results]
        if FAILURE in states:
            return FAILURE
        if all(state == SUCCESS for state in states):
            return SUCCESS
        return STARTED if {STARTED, SUCCESS} & set(states) else PENDING

    def get(self, timeout: float | None = None) -> Any:
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            return _unpack(
                self._result.get(
                    timeout=timeout,
                    propagate=True,
                    disable_sync_subtasks=False,
                    on_message=_record_progress,
                )
            )
        except CeleryTimeout:
            raise TaskTimeout(
                f"task {self.id} did not finish within {timeout} s; is a worker listening on "
                "its queue? (om runtime status)"
            ) from None
        except Exception as exc:  # the remote failure, rebuilt from JSON
            _raise_failure(exc)


class _ReduceAfter(TaskResult):
    """mapreduce() without a chord-capable result backend: reduce on first get()."""

    def __init__(self, mapped: CeleryResult, executor: CeleryExecutor, reducer: TaskCall) -> None:
        self.id = mapped.id
        self._mapped, self._executor, self._reducer = mapped, executor, reducer
        self._reduced: CeleryResult | None = None

    @property
    def status(self) -> str:
        if self._reduced is not None:
            return self._reduced.status
        return FAILURE if self._mapped.status == FAILURE else STARTED

    def get(self, timeout: float | None = None) -> Any:
        if self._reduced is None:
            values = self._mapped.get(timeout=timeout)
            self._reduced = self._executor.send(self._reducer, previous=values)
        return self._reduced.get(timeout=timeout)


class CeleryExecutor:
    """Sends tasks to Celery workers through ``broker``."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.app = make_app(broker)
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, TaskResult] = OrderedDict()

    def _keep(self, result: TaskResult) -> TaskResult:
        # result(id) must hand back the very handle that was returned: with
        # rpc:// a result message is consumed once, by one AsyncResult, so a
        # second handle on the same id would wait forever.
        with self._lock:
            self._sent[result.id] = result
            self._sent.move_to_end(result.id)
            while len(self._sent) > _KEPT_RESULTS:
                self._sent.popitem(last=False)
        return result

    def _signature(self, call: TaskCall, *args: Any) -> Any:
        # argsrepr/kwargsrepr: Celery would otherwise repr the message for its logs on
        # every send; the task and the model (if any) say what a log reader needs.
        message = _message(call)
        name = message["payload"].get("name") if isinstance(message["payload"], dict) else None
        return self.app.signature(
            TASK_NAME,
            args=(*args, message),
            queue=call.queue,
            argsrepr=f"{call.task}({name or ''})",
            kwargsrepr="{}",
        )

    def send(self, call: TaskCall, *, previous: Any = None) -> CeleryResult:
        args = () if previous is None else (previous,)
        return CeleryResult(self._signature(call, *args).apply_async())

    def submit_background(self, call: TaskCall, *, task_id: str | None = None) -> TaskResult:
        """Send a call under a chosen task id (Celery tasks never block the caller)."""
        return self._keep(CeleryResult(self._signature(call).apply_async(task_id=task_id)))

    def submit(self, work: TaskCall | Batch) -> TaskResult:
        """Send a call, or a batch as a Celery group, chain or chord."""
        from celery import chain, chord, group

        if isinstance(work, TaskCall):
            return self._keep(self.send(work))
        signatures = [self._signature(c) for c in work.calls]
        if work.mode == "parallel":
            return self._keep(CeleryResult(group(signatures).apply_async()))
        if work.mode == "sequence":
            return self._keep(CeleryResult(chain(signatures).apply_async()))
        mapped, reducer = signatures[:-1], signatures[-1]
        if _backend_for(self.broker) != "rpc://":
            return self._keep(CeleryResult(chord(mapped)(reducer)))
        return self._keep(
            _ReduceAfter(CeleryResult(group(mapped).apply_async()), self, work.calls[-1])
        )

    def result(self, task_id: str) -> TaskResult:
        """A task's result by id (with RabbitMQ: from the process that sent it)."""
        if not task_id:
            raise NotFound("empty task id")
        with self._lock:
            kept = self._sent.get(task_id)
        return kept if kept is not None else CeleryResult(self.app.AsyncResult(task_id))

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """Workers that answer, with their queues and pool sizes."""
        queues = self.app.control.inspect(timeout=timeout).active_queues() or {}
        # The workers are known now: the next questions return once each answered.
        known = (
            self.app.control.inspect(timeout=timeout, destination=sorted(queues), limit=len(queues))
            if queues
            else None
        )
        stats = (known.stats() if known else None) or {}
        active = (known.active() if known else None) or {}
        return {
            worker: {
                "queues": sorted(q["name"] for q in queues.get(worker, [])),
                "concurrency": stats.get(worker, {}).get("pool", {}).get("max-concurrency"),
                "active": len(active.get(worker, [])),
            }
            for worker in sorted(set(queues) | set(stats))
        }


def run_worker(
    broker: str,
    *,
    labels: list[str],
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
) -> None:
    """Run a Celery worker in this process (blocks) consuming ``labels`` queues."""
    import os
    import socket

    app = make_app(broker)
    argv = [
        "worker",
        f"--queues={','.join(labels)}",
        f"--loglevel={loglevel}",
        f"--hostname={hostname or f'omops-{os.getpid()}@{socket.gethostname()}'}",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv=argv)

"""The Celery executor: tasks as JSON messages to workers over RabbitMQ or Redis.

Workers read everything by name from the catalog and blobs of their own
configuration; a message carries the task name, its JSON payload and the
bucket. Tasks are acknowledged late and re-queued when a worker dies, so a
killed worker's task runs again on another worker instead of being lost.
"""

from __future__ import annotations

import threading
from typing import Any

from omops.config import load_settings
from omops.errors import ConfigError, NotFound, TaskFailed, TaskTimeout
from omops.omega import Omega
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import FAILURE, PENDING, STARTED, TaskResult, failure_of
from omops.runtime.tasks import execute

__all__ = ["CeleryExecutor", "CeleryResult", "make_app", "run_worker"]

TASK_NAME = "omops.run"
_apps: dict[str, Any] = {}
_apps_lock = threading.Lock()
_worker_omegas: dict[str, Omega] = {}


def _backend_for(broker: str) -> str:
    # Redis stores results where any client can read them; with RabbitMQ,
    # results travel back to the caller over AMQP (rpc://), the fastest path.
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


def _worker_omega(bucket: str) -> Omega:
    om = _worker_omegas.get(bucket)
    if om is None:
        om = _worker_omegas[bucket] = Omega(settings=load_settings(), bucket=bucket)
    return om


def _run(self: Any, *args: Any) -> Any:
    """The one Celery task: ``(message)`` or, in a chain/chord, ``(previous, message)``."""
    previous, message = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    om = _worker_omega(message.get("bucket") or "default")
    try:
        return execute(om, message["task"], message["payload"], previous)
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
        app = Celery("omops", broker=broker, backend=_backend_for(broker), set_as_current=False)
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


class CeleryResult(TaskResult):
    """A task (or group, or chain) running on Celery workers."""

    def __init__(self, async_result: Any) -> None:
        self._result = async_result
        self.id = async_result.id

    @property
    def status(self) -> str:
        state = self._result.state if not hasattr(self._result, "results") else self._group_state()
        return {"RETRY": STARTED, "RECEIVED": PENDING}.get(state, state)

    def _group_state(self) -> str:
        if not self._result.ready():
            return STARTED if self._result.completed_count() else PENDING
        return FAILURE if self._result.failed() else "SUCCESS"

    def get(self, timeout: float | None = None) -> Any:
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            return self._result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
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

    def _signature(self, call: TaskCall, *args: Any) -> Any:
        return self.app.signature(TASK_NAME, args=(*args, _message(call)), queue=call.queue)

    def send(self, call: TaskCall, *, previous: Any = None) -> CeleryResult:
        args = () if previous is None else (previous,)
        return CeleryResult(self._signature(call, *args).apply_async())

    def submit_background(self, call: TaskCall, *, task_id: str | None = None) -> TaskResult:
        """Send a call under a chosen task id (Celery tasks never block the caller)."""
        return CeleryResult(self._signature(call).apply_async(task_id=task_id))

    def submit(self, work: TaskCall | Batch) -> TaskResult:
        """Send a call, or a batch as a Celery group, chain or chord."""
        from celery import chain, chord, group

        if isinstance(work, TaskCall):
            return self.send(work)
        signatures = [self._signature(c) for c in work.calls]
        if work.mode == "parallel":
            return CeleryResult(group(signatures).apply_async())
        if work.mode == "sequence":
            return CeleryResult(chain(signatures).apply_async())
        mapped, reducer = signatures[:-1], signatures[-1]
        if _backend_for(self.broker) != "rpc://":
            return CeleryResult(chord(mapped)(reducer))
        return _ReduceAfter(CeleryResult(group(mapped).apply_async()), self, work.calls[-1])

    def result(self, task_id: str) -> TaskResult:
        """A task's result by id (with RabbitMQ: from the process that sent it)."""
        if not task_id:
            raise NotFound("empty task id")
        return CeleryResult(self.app.AsyncResult(task_id))

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """Workers that answer, with their queues and pool sizes."""
        inspect = self.app.control.inspect(timeout=timeout)
        queues = inspect.active_queues() or {}
        stats = inspect.stats() or {}
        active = inspect.active() or {}
        return {
            worker: {
                "queues": sorted(q["name"] for q in queues.get(worker, [])),
                "concurrency": stats.get(worker, {}).get("pool", {}).get("max-concurrency"),
                "active": len(active.get(worker, [])),
            }
            for worker in sorted(set(queues) | set(stats))
        }


def run_worker(broker: str, *, labels: list[str], concurrency: int | None = None,
               loglevel: str = "INFO", hostname: str | None = None) -> None:
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

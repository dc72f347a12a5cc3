"""The Celery executor: tasks as JSON messages to workers over RabbitMQ or Redis.

Workers read everything by name from the catalog and blobs of their own
configuration; a message carries the task name, its JSON payload and the
bucket. Tasks are acknowledged late and re-queued when a worker dies, so a
killed worker's task runs again on another worker instead of being lost.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import orjson

from omops.config import load_settings, mask_url
from omops.errors import NotFound, TaskFailed, TaskTimeout
from omops.omega import Omega
from omops.runtime._celery_rpc import close_app, drain_replies, kept_replies_backend
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import FAILURE, PENDING, STARTED, SUCCESS, TaskResult, failure_of
from omops.runtime.tasks import execute

__all__ = ["CeleryExecutor", "CeleryResult", "make_app", "run_worker"]

TASK_NAME = "omops.run"
_KEPT_RESULTS = 1000


def _backend_for(broker: str) -> str:
    # Redis stores results where any client can read them; with RabbitMQ,
    # results travel back to the caller over AMQP (rpc://), the fastest path.
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


class _WorkerOmegas:
    """The worker process's Omega, and its bucket views (kept on the Celery app)."""

    def __init__(self, om: Omega) -> None:
        self.root = om
        self._views: dict[str, Omega] = {om.bucket: om}
        self._lock = threading.Lock()

    def __call__(self, bucket: str) -> Omega:
        with self._lock:
            found = self._views.get(bucket)
            if found is None:
                if len(self._views) > 1024:  # bounded: views are cheap to make again
                    self._views = {self.root.bucket: self.root}
                found = self._views[bucket] = self.root[bucket]
            return found


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
    omegas = getattr(self.app, "omops_omegas", None)
    if omegas is None:  # the worker's Omega: its own configuration, built on first task
        omegas = self.app.omops_omegas = _WorkerOmegas(Omega(settings=load_settings()))
    om = omegas(message.get("bucket") or omegas.root.bucket)
    try:
        return _pack(execute(om, message["task"], message["payload"], previous))
    except Exception as exc:
        raise failure_of(exc) from None


def make_app(broker: str) -> Any:
    """A Celery app for a broker URL, with the omops task registered."""
    from celery import Celery

    backend = _backend_for(broker)
    app = Celery(
        "omops",
        broker=broker,
        backend=kept_replies_backend() if backend == "rpc://" else backend,
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
    return app


def _message(call: TaskCall) -> dict[str, Any]:
    return {"task": call.task, "payload": call.payload, "bucket": call.bucket}


def _raise_failure(exc: BaseException) -> None:
    if isinstance(exc, TaskFailed):
        raise exc
    raise failure_of(exc)


class _Progress:
    """STARTED/RETRY states that arrive as rpc:// replies (Celery drops them), by task id."""

    def __init__(self) -> None:
        self._states: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, meta: dict[str, Any]) -> None:
        task_id, state = meta.get("task_id"), meta.get("status")
        if not task_id or not state:
            return
        with self._lock:
            if state in ("SUCCESS", "FAILURE", "REVOKED"):
                self._states.pop(task_id, None)
                return
            self._states[task_id] = state
            while len(self._states) > _KEPT_RESULTS:
                self._states.popitem(last=False)

    def state_of(self, async_result: Any) -> str:
        state = async_result.state
        if state == PENDING:
            with self._lock:
                state = self._states.get(async_result.id, PENDING)
        return {"RETRY": STARTED, "RECEIVED": PENDING, "REVOKED": FAILURE}.get(state, state)


class CeleryResult(TaskResult):
    """A task (or group, or chain) running on Celery workers."""

    def __init__(self, async_result: Any, progress: _Progress) -> None:
        self._result = async_result
        self._progress = progress
        self.id = async_result.id

    @property
    def status(self) -> str:
        drain_replies(self._result, self._progress.record)
        if not hasattr(self._result, "results"):
            return self._progress.state_of(self._result)
        # A group: failed as soon as one call failed (get() raises then), done when all are.
        states = [self._progress.state_of(r) for r in self._result.results]
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
                    on_message=self._progress.record,
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
    """Sends tasks to Celery workers through the broker at ``url``.

    Parameters
    ----------
    om : Omega
        The Omega whose tasks these are (workers use their own configuration).
    url : str
        Broker URL, ``amqp://...`` (RabbitMQ) or ``redis://...``.
    """

    def __init__(self, om: Omega | None, url: str) -> None:
        self.broker = url
        self.app = make_app(url)
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, TaskResult] = OrderedDict()
        self._progress = _Progress()
        self._backends: dict[int, Any] = {}  # result backends in use (one per thread)
        # An Omega dropped without close() still closes its broker connections.
        weakref.finalize(self, close_app, self.app, self._backends.values())

    def __repr__(self) -> str:
        return f"<CeleryExecutor {mask_url(self.broker)}>"

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

    def _wrap(self, async_result: Any) -> CeleryResult:
        backend = async_result.backend
        if id(backend) not in self._backends:
            with self._lock:
                self._backends[id(backend)] = backend
        return CeleryResult(async_result, self._progress)

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
        return self._wrap(self._signature(call, *args).apply_async())

    def submit(
        self, work: TaskCall | Batch, *, task_id: str | None = None, background: bool = False
    ) -> TaskResult:
        """Send a call, or a batch as a Celery group, chain or chord (never blocks)."""
        from celery import chain, chord, group

        if isinstance(work, TaskCall):
            return self._keep(self._wrap(self._signature(work).apply_async(task_id=task_id)))
        signatures = [self._signature(c) for c in work.calls]
        if work.mode == "parallel":
            return self._keep(self._wrap(group(signatures).apply_async()))
        if work.mode == "sequence":
            return self._keep(self._wrap(chain(signatures).apply_async()))
        mapped, reducer = signatures[:-1], signatures[-1]
        if _backend_for(self.broker) != "rpc://":
            return self._keep(self._wrap(chord(mapped)(reducer)))
        return self._keep(
            _ReduceAfter(self._wrap(group(mapped).apply_async()), self, work.calls[-1])
        )

    def result(self, task_id: str) -> TaskResult:
        """A task's result by id (with RabbitMQ: from the process that sent it)."""
        if not task_id:
            raise NotFound("empty task id")
        with self._lock:
            kept = self._sent.get(task_id)
        return kept if kept is not None else self._wrap(self.app.AsyncResult(task_id))

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
        # safe: each task's argsrepr (omops.model(forecast)), not its payload
        active = (known.active(safe=True) if known else None) or {}
        workers = {
            worker: {
                "host": worker.rpartition("@")[2] or None,
                "queues": sorted(q["name"] for q in queues.get(worker, [])),
                "concurrency": stats.get(worker, {}).get("pool", {}).get("max-concurrency"),
                "active": len(active.get(worker, [])),
                "running": [_running(task) for task in active.get(worker, [])],
            }
            for worker in sorted(set(queues) | set(stats))
        }
        return {"executor": "celery", "broker": mask_url(self.broker), "workers": workers}

    def shutdown(self) -> None:
        """Close the broker connections of this executor's Celery app."""
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
        close_app(self.app, backends)


def _running(task: dict[str, Any]) -> dict[str, Any]:
    """A task a worker runs, as ``om runtime status`` shows it: id, what, since when."""
    return {
        "id": task.get("id") or "",
        "task": task.get("args") if isinstance(task.get("args"), str) else task.get("name"),
        "started": task.get("time_start"),
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

"""The Dask executor: tasks on a Dask distributed cluster, for ``dask://host:port``.

``OMOPS_BROKER=dask://scheduler:8786`` sends every task to the Dask scheduler
at ``tcp://scheduler:8786``. A task travels as one JSON text: the task name,
its payload, the bucket, and the catalog and blob store URLs of the client
(never credentials: a worker reaches the store with its own environment, e.g.
``AWS_*`` or ``OMOPS_BLOBS_OPTIONS``). On the worker,
:func:`omops.runtime.tasks.execute` runs it with an Omega configured like the
client, made once per worker process and kept on the Dask worker object.

``om.runtime.require(label)`` maps to Dask worker *resources*: a task with a
label other than the configured default asks for one unit of the resource of
that name (start such workers with ``dask worker --resources "gpu=1"``).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from omops.config import mask_url
from omops.errors import ConfigError, NotFound, TaskFailed, TaskTimeout
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import FAILURE, PENDING, STARTED, SUCCESS, TaskResult, failure_of

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["DaskExecutor", "DaskResult", "run_message"]

_KEPT_RESULTS = 1000


def run_message(text: str, previous: Any = None) -> str:
    """Run one task message (JSON) on a Dask worker; the result as JSON text."""
    from omops.runtime.tasks import execute

    message = orjson.loads(text)
    om = _worker_omega(message)
    try:
        value = execute(om, message["task"], message["payload"], _unpack(previous))
    except Exception as exc:
        raise failure_of(exc) from None
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _unpack(previous: Any) -> Any:
    if isinstance(previous, str):
        return orjson.loads(previous)
    if isinstance(previous, list):
        return [_unpack(p) for p in previous]
    return previous


def _worker_omega(message: dict[str, Any]) -> Omega:
    """The Omega for a message's catalog, blobs and bucket, kept on this Dask worker."""
    from distributed import get_worker

    from omops.config import load_settings
    from omops.omega import Omega

    try:
        holder: Any = get_worker()
    except ValueError:  # not in a worker (a test calling run_message directly)
        holder = threading.current_thread()
    omegas: dict[tuple[str, str], Omega] | None = getattr(holder, "omops_omegas", None)
    if omegas is None:
        omegas = holder.omops_omegas = {}
    key = (message["catalog"], message["blobs"])
    root = omegas.get(key)
    if root is None:
        root = omegas[key] = Omega(
            catalog=message["catalog"], blobs=message["blobs"], settings=load_settings()
        )
    bucket = message.get("bucket") or root.bucket
    return root if bucket == root.bucket else root[bucket]


class DaskResult(TaskResult):
    """A task (or a list of tasks) on the Dask cluster."""

    def __init__(self, future: Any, task_id: str, *, many: bool = False) -> None:
        self.id = task_id
        self._future = future  # a distributed Future, or a list of them (parallel)
        self._many = many

    def _futures(self) -> list[Any]:
        return list(self._future) if self._many else [self._future]

    @property
    def status(self) -> str:
        states = [f.status for f in self._futures()]
        if any(s in ("error", "cancelled", "lost") for s in states):
            return FAILURE
        if all(s == "finished" for s in states):
            return SUCCESS
        return STARTED if "finished" in states else PENDING

    def get(self, timeout: float | None = None) -> Any:
        from distributed import wait

        done = wait(self._futures(), timeout=timeout, return_when="ALL_COMPLETED")
        if done.not_done and not any(f.status == "error" for f in done.done):
            raise TaskTimeout(
                f"task {self.id} did not finish within {timeout} s; call get() again with a "
                "longer timeout, or check the cluster (om runtime status)"
            )
        values = []
        for future in self._futures():
            try:
                values.append(orjson.loads(future.result()))
            except TaskFailed:
                raise
            except Exception as exc:  # the worker's failure, or a lost connection
                raise failure_of(exc) from None
        return values if self._many else values[0]


class DaskExecutor:
    """Sends tasks to the Dask scheduler at ``url`` (``dask://host:port``).

    Parameters
    ----------
    om : Omega
        Whose catalog and blob URLs go with each task.
    url : str
        ``dask://host:port`` (``tcp://host:port`` is what Dask is given).
    """

    def __init__(self, om: Omega, url: str) -> None:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise ConfigError(
                f"OMOPS_BROKER {mask_url(url)!r} names no scheduler: write dask://host:port, "
                "e.g. dask://127.0.0.1:8786"
            )
        self.om = om
        self.url = url
        self.address = f"tcp://{parts.hostname}:{parts.port}"
        self._client: Any = None
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, TaskResult] = OrderedDict()

    def __repr__(self) -> str:
        return f"<DaskExecutor {self.address}>"

    def client(self) -> Any:
        """The ``distributed.Client`` (connected on first use)."""
        from distributed import Client

        with self._lock:
            if self._client is None:
                self._client = Client(self.address, set_as_default=False, timeout=30)
                # An Omega dropped without close() still closes its connection.
                weakref.finalize(self, self._client.close)
            return self._client

    def _message(self, call: TaskCall) -> str:
        return orjson.dumps(
            {
                "task": call.task,
                "payload": call.payload,
                "bucket": call.bucket or self.om.bucket,
                "catalog": self.om.catalog.url,
                "blobs": self.om.blobs.url,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        ).decode()

    def _send(self, call: TaskCall, previous: Any = None, key: str | None = None) -> Any:
        resources = None
        if call.queue not in ("default", self.om.settings.label):
            resources = {call.queue: 1}
        return self.client().submit(
            run_message,
            self._message(call),
            previous,
            key=key or f"omops-{call.task}-{_uuid()}",
            pure=False,
            resources=resources,
            retries=0,
        )

    def _keep(self, result: TaskResult) -> TaskResult:
        with self._lock:
            self._kept[result.id] = result
            while len(self._kept) > _KEPT_RESULTS:
                self._kept.popitem(last=False)
        return result

    def submit(
        self, work: TaskCall | Batch, *, task_id: str | None = None, background: bool = False
    ) -> TaskResult:
        """Send a call or a batch to the cluster (never blocks on the result)."""
        task_id = task_id or _uuid()
        if isinstance(work, TaskCall):
            return self._keep(DaskResult(self._send(work, key=task_id), task_id))
        if work.mode == "parallel":
            futures = [self._send(c) for c in work.calls]
            return self._keep(DaskResult(futures, task_id, many=True))
        if work.mode == "sequence":
            previous = None
            for i, call in enumerate(work.calls):
                last = i == len(work.calls) - 1
                previous = self._send(call, previous, key=task_id if last else None)
            return self._keep(DaskResult(previous, task_id))
        mapped = [self._send(c) for c in work.calls[:-1]]
        reduced = self._send(work.calls[-1], mapped, key=task_id)  # Dask passes their results
        return self._keep(DaskResult(reduced, task_id))

    def result(self, task_id: str) -> TaskResult:
        """A task submitted through this executor, by id."""
        with self._lock:
            found = self._kept.get(task_id)
        if found is None:
            raise NotFound(
                f"no task {task_id!r} was sent from this process; the Dask executor keeps the "
                f"last {_KEPT_RESULTS} of the process that sent them"
            )
        return found

    def status(self) -> dict[str, Any]:
        """The cluster's workers: host, resources (labels), threads and running tasks."""
        client = self.client()
        info = client.scheduler_info()
        processing = client.processing()
        workers = {}
        for address, worker in sorted(info.get("workers", {}).items()):
            running = [
                {"id": str(key), "task": str(key).rsplit("-", 1)[0], "started": None}
                for key in processing.get(address, ())
            ]
            workers[worker.get("name") or address] = {
                "host": worker.get("host") or urlsplit(address).hostname,
                "queues": sorted(worker.get("resources") or {}) or ["default"],
                "concurrency": worker.get("nthreads"),
                "active": len(running),
                "running": running,
            }
        return {"executor": "dask", "broker": self.url, "workers": workers}

    def shutdown(self) -> None:
        """Close the connection to the scheduler (the cluster keeps running)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _uuid() -> str:
    import uuid

    return uuid.uuid4().hex

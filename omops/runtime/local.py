"""The local executor: single tasks in this process, parallel work in worker processes."""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from omops.errors import NotFound
from omops.runtime._pool import ProcessPool
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import DoneResult, FutureResult, TaskResult, gather
from omops.runtime.tasks import execute

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["LocalExecutor"]

_KEPT_RESULTS = 1000


class LocalExecutor:
    """Runs tasks where the caller is.

    A single task runs in this process when submitted (the cheapest path: no
    serialization), with this Omega's plugins and caches. ``parallel()`` and
    ``mapreduce()`` spread calls over ``max_workers`` worker processes
    (:class:`~omops.runtime._pool.ProcessPool`), started on first use; they
    read the same catalog and blobs by URL and use the installed plugins.

    Parameters
    ----------
    om : Omega
    url : str, optional
        Unused (the local executor has no broker).
    max_workers : int, optional
        Worker processes for batches; the number of CPUs by default.
    """

    def __init__(
        self, om: Omega, url: str | None = None, *, max_workers: int | None = None
    ) -> None:
        self.om = om
        self.max_workers = max_workers or os.cpu_count() or 1
        self._pool: ProcessPool | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._results: OrderedDict[str, TaskResult] = OrderedDict()

    def __repr__(self) -> str:
        return f"<LocalExecutor {self.om.catalog!r} workers={self.max_workers}>"

    def _omega(self, call: TaskCall) -> Omega:
        bucket = call.bucket or self.om.bucket
        return self.om if bucket == self.om.bucket else self.om[bucket]

    def pool(self) -> ProcessPool:
        """The worker processes for batches (started on first use)."""
        with self._lock:
            if self._pool is None:
                env = {
                    **os.environ,
                    # What this process can import, the workers can (a model's class
                    # from a module on a path a notebook added, say), as with spawn.
                    "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p != ""),
                    "OMOPS_CATALOG": self.om.catalog.url,
                    "OMOPS_BLOBS": self.om.blobs.url,
                    "OMOPS_BUCKET": self.om.bucket,
                }
                env.pop("OMOPS_BROKER", None)  # workers run what they are sent, here
                self._pool = ProcessPool(env, self.max_workers)
                # An Omega dropped without close() still stops its workers.
                weakref.finalize(self, self._pool.shutdown)
            return self._pool

    def shutdown(self) -> None:
        """Stop the worker processes and background threads, if any were started."""
        with self._lock:
            pool, self._pool = self._pool, None
            threads, self._threads = self._threads, None
        if pool is not None:
            pool.shutdown()
        if threads is not None:
            threads.shutdown(wait=True)

    def _keep(self, result: TaskResult) -> TaskResult:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > _KEPT_RESULTS:
                self._results.popitem(last=False)
        return result

    def submit(
        self, work: TaskCall | Batch, *, task_id: str | None = None, background: bool = False
    ) -> TaskResult:
        """Run a call or a batch; the result is kept for :meth:`result`.

        A single call runs now, in this process, unless ``background``: then
        in a thread of this process, and this returns at once.
        """
        if isinstance(work, Batch):
            return self._keep(self._submit_batch(work, task_id))
        if background:
            future = self._background().submit(self._run_here, work, None)
            return self._keep(FutureResult(future, task_id=task_id))
        return self._keep(DoneResult.run(lambda: self._run_here(work, None), task_id=task_id))

    def _background(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="omops-task"
                )
            return self._threads

    def _run_here(self, call: TaskCall, previous: Any) -> Any:
        return execute(self._omega(call), call.task, call.payload, previous)

    def _in_pool(self, call: TaskCall, previous: Any = None) -> FutureResult:
        bucket = call.bucket or self.om.bucket
        return FutureResult(self.pool().submit(call.task, bucket, dict(call.payload), previous))

    def _submit_batch(self, batch: Batch, task_id: str | None) -> TaskResult:
        if batch.mode == "parallel":
            return FutureResult(gather([self._in_pool(c) for c in batch.calls]), task_id=task_id)
        if batch.mode == "sequence":

            def chain() -> Any:
                previous = None
                for call in batch.calls:
                    previous = self._run_here(call, previous)
                return previous

            return DoneResult.run(chain, task_id=task_id)
        mapped, reducer = batch.calls[:-1], batch.calls[-1]
        futures = [self._in_pool(c) for c in mapped]
        reduced = gather(futures, then=lambda values: self._run_here(reducer, values))
        return FutureResult(reduced, task_id=task_id)

    def result(self, task_id: str) -> TaskResult:
        """A result submitted through this executor, by id."""
        with self._lock:
            found = self._results.get(task_id)
        if found is None:
            raise NotFound(
                f"no task {task_id!r} in this process; the local executor keeps the last "
                f"{_KEPT_RESULTS} results of the process that ran them"
            )
        return found

    def status(self) -> dict[str, Any]:
        """Where work runs: here, and in how many worker processes for batches."""
        with self._lock:
            pool = self._pool
        return {
            "executor": "local",
            "workers": {},
            "pool": {"size": self.max_workers, "started": pool is not None and bool(pool.started)},
        }

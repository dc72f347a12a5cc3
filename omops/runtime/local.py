"""The local executor: single tasks in this process, parallel work in a process pool."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from omops.errors import NotFound
from omops.omega import Omega
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import DoneResult, FutureResult, TaskResult, failure_of, gather
from omops.runtime.tasks import execute

__all__ = ["LocalExecutor"]

_KEPT_RESULTS = 1000
_worker_omegas: dict[tuple[str, str, str], Omega] = {}


def _pool_omega(spec: tuple[str, str, str]) -> Omega:
    """The pool process's Omega by URLs; buckets share one catalog and blob store."""
    om = _worker_omegas.get(spec)
    if om is None:
        catalog, blobs, bucket = spec
        base = next(
            (o for (c, b, _), o in _worker_omegas.items() if (c, b) == (catalog, blobs)), None
        )
        if base is None:
            om = Omega(catalog=catalog, blobs=blobs, bucket=bucket)
        else:
            om = base[bucket]
        _worker_omegas[spec] = om
    return om


def _run_in_pool(
    spec: tuple[str, str, str], task: str, payload: dict[str, Any], previous: Any
) -> Any:
    """Entry point in a pool process: rebuild the Omega by URLs, run the task."""
    om = _pool_omega(spec)
    try:
        return execute(om, task, payload, previous)
    except Exception as exc:
        # Exceptions of arbitrary types may not unpickle in the parent: send text.
        raise failure_of(exc) from None


@contextmanager
def _without_main() -> Iterator[None]:
    """Hide ``__main__`` while pool processes start.

    spawn re-imports the caller's main script in each new process, running its
    top-level code again (or failing for stdin and notebooks). Pool processes
    only need omops, so they start without it.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        for key in saved:
            setattr(main, key, None) if key == "__spec__" else delattr(main, key)
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


class LocalExecutor:
    """Runs tasks where the caller is.

    A single task runs in this process when submitted (the cheapest path: no
    serialization). ``parallel()`` and ``mapreduce()`` spread calls over a
    process pool of ``max_workers`` processes, started on first use.
    """

    def __init__(self, om: Omega, *, max_workers: int | None = None) -> None:
        self.om = om
        self.max_workers = max_workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._results: OrderedDict[str, TaskResult] = OrderedDict()

    def _spec(self, call: TaskCall) -> tuple[str, str, str]:
        return (self.om.catalog.url, self.om.blobs.url, call.bucket or self.om.bucket)

    def _omega(self, call: TaskCall) -> Omega:
        bucket = call.bucket or self.om.bucket
        return self.om if bucket == self.om.bucket else self.om[bucket]

    def pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: forking a process that holds DuckDB/BLAS threads is unsafe.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self.max_workers, mp_context=context)
            return self._pool

    def shutdown(self) -> None:
        """Stop the process pool, if one was started."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _keep(self, result: TaskResult) -> TaskResult:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > _KEPT_RESULTS:
                self._results.popitem(last=False)
        return result

    def submit(self, work: TaskCall | Batch) -> TaskResult:
        """Run a call or a batch; the result is kept for :meth:`result`."""
        if isinstance(work, TaskCall):
            return self._keep(DoneResult.run(lambda: self._run_here(work, None)))
        return self._keep(self._submit_batch(work))

    def submit_background(self, call: TaskCall, *, task_id: str | None = None) -> TaskResult:
        """Run a call in a background thread of this process; returns at once."""
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="omops-task"
                )
            threads = self._threads
        future = threads.submit(self._run_here, call, None)
        return self._keep(FutureResult(future, task_id=task_id))

    def _run_here(self, call: TaskCall, previous: Any) -> Any:
        return execute(self._omega(call), call.task, call.payload, previous)

    def _in_pool(self, call: TaskCall, previous: Any = None) -> FutureResult:
        pool = self.pool()
        with self._lock, _without_main():  # submit() may start a process
            future: Future = pool.submit(
                _run_in_pool, self._spec(call), call.task, dict(call.payload), previous
            )
        return FutureResult(future)

    def _submit_batch(self, batch: Batch) -> TaskResult:
        if batch.mode == "parallel":
            return FutureResult(gather([self._in_pool(c) for c in batch.calls]))
        if batch.mode == "sequence":

            def chain() -> Any:
                previous = None
                for call in batch.calls:
                    previous = self._run_here(call, previous)
                return previous

            return DoneResult.run(chain)
        mapped, reducer = batch.calls[:-1], batch.calls[-1]
        futures = [self._in_pool(c) for c in mapped]
        return FutureResult(gather(futures, then=lambda values: self._run_here(reducer, values)))

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

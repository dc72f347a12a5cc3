"""A pool of local worker processes that run tasks by name: JSON in, JSON out.

The local executor runs ``parallel()`` and ``mapreduce()`` calls here. Each
worker is a fresh ``python -m omops.runtime._pool_worker`` with the Omega's
catalog and blob URLs in its environment; a task travels as one JSON line
(task name, bucket, payload, previous result) and its result comes back as
one. Nothing is pickled, and the caller's ``__main__`` (a script, a notebook)
is never imported again in the workers, because they are not forks or
multiprocessing spawns of it.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import IO, Any

import orjson

from omops.errors import TaskFailed

__all__ = ["ProcessPool"]

log = logging.getLogger("omops.runtime")


class _Worker:
    """One worker process and the task it runs now."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omops.runtime._pool_worker"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the worker's prints and logs go to the caller's stderr
            start_new_session=True,  # a Ctrl-C in a terminal reaches the caller only
        )
        self.busy: tuple[int, Future] | None = None
        self.ready = False

    def send(self, line: bytes) -> None:
        stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        stdin.write(line)
        stdin.flush()


class ProcessPool:
    """``size`` worker processes, started together on first use, each one task at a time.

    Parameters
    ----------
    env : dict
        The workers' environment (the Omega's URLs as ``OMOPS_*`` variables).
    size : int
        Number of worker processes.
    """

    def __init__(self, env: dict[str, str], size: int) -> None:
        self.env = env
        self.size = size
        self._workers: list[_Worker] = []
        self._queue: deque[tuple[int, bytes, Future]] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        self.started: float | None = None

    def _start(self) -> None:
        """Start the workers (caller holds the lock)."""
        if self._workers or self._closed:
            return
        self.started = time.monotonic()
        note = (
            f"omops: starting {self.size} local worker process(es) for parallel work; "
            "the first batch waits for them to import omops (once per Omega)"
        )
        print(note, file=sys.stderr) if sys.stderr.isatty() else log.info(note)
        self._workers = [self._spawn() for _ in range(self.size)]

    def _spawn(self) -> _Worker:
        worker = _Worker(self.env)
        threading.Thread(
            target=self._read, args=(worker,), name="omops-pool-reader", daemon=True
        ).start()
        return worker

    def submit(self, task: str, bucket: str, payload: dict[str, Any], previous: Any) -> Future:
        """Queue a task; the future resolves to its JSON result or raises TaskFailed."""
        future: Future = Future()
        future.set_running_or_notify_cancel()
        message = {"task": task, "bucket": bucket, "payload": payload, "previous": previous}
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool was shut down")
            self._start()
            task_id = next(self._ids)
            line = orjson.dumps({"id": task_id, **message}, option=orjson.OPT_SERIALIZE_NUMPY)
            self._queue.append((task_id, line + b"\n", future))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Hand queued tasks to idle, ready workers (caller holds the lock)."""
        for worker in self._workers:
            if not self._queue:
                return
            if worker.ready and worker.busy is None:
                task_id, line, future = self._queue.popleft()
                worker.busy = (task_id, future)
                try:
                    worker.send(line)
                except OSError:  # it died; its reader replaces it and fails nothing else
                    worker.busy = None
                    self._queue.appendleft((task_id, line, future))

    def _read(self, worker: _Worker) -> None:
        """Results of one worker, until it exits."""
        stdout: IO[bytes] = worker.proc.stdout  # type: ignore[assignment]
        with stdout:  # closed at the worker's exit, not left to the garbage collector
            for line in stdout:
                message = orjson.loads(line)
                with self._lock:
                    if message.get("ready"):
                        worker.ready = True
                    else:
                        _, future = worker.busy or (None, None)
                        worker.busy = None
                        if future is not None:
                            _resolve(future, message)
                    self._dispatch()
        self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        """A worker exited: fail its task, start another unless shutting down."""
        code = worker.proc.wait()
        for stream in (worker.proc.stdin, worker.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # a broken pipe to a dead worker
                    pass
        with self._lock:
            busy, worker.busy = worker.busy, None
            if worker in self._workers:
                self._workers.remove(worker)
                if not self._closed and worker.ready:  # one that never started would again
                    self._workers.append(self._spawn())
            if not self._workers and self._queue and not self._closed:
                for _, _, future in self._queue:
                    future.set_exception(
                        TaskFailed(
                            "WorkerLost",
                            f"the local worker processes failed to start (status {code}); "
                            "their error is on stderr",
                        )
                    )
                self._queue.clear()
            if busy is not None:
                busy[1].set_exception(
                    TaskFailed(
                        "WorkerLost",
                        f"the local worker process running this task exited (status {code}); "
                        "it may have run out of memory or been killed",
                    )
                )
            if self._closed:
                for _, _, future in self._queue:
                    future.set_exception(TaskFailed("WorkerLost", "the pool was shut down"))
                self._queue.clear()

    def shutdown(self) -> None:
        """Stop the workers; tasks still queued fail."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
        for worker in workers:
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()

    def __repr__(self) -> str:
        return f"<ProcessPool size={self.size} running={len(self._workers)} pid={os.getpid()}>"


def _resolve(future: Future, message: dict[str, Any]) -> None:
    if message.get("ok"):
        future.set_result(message.get("value"))
        return
    error = message.get("error") or {}
    future.set_exception(
        TaskFailed(error.get("type", "Error"), error.get("message", ""), error.get("traceback", ""))
    )

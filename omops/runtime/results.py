"""``TaskResult``: the handle every executor returns."""

from __future__ import annotations

import threading
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from omops.errors import OmopsError, TaskFailed, TaskTimeout

__all__ = ["PENDING", "FAILURE", "STARTED", "SUCCESS", "TaskResult", "FutureResult", "DoneResult"]

PENDING, STARTED, SUCCESS, FAILURE = "PENDING", "STARTED", "SUCCESS", "FAILURE"


class TaskResult:
    """A task's eventual result.

    Attributes
    ----------
    id : str
        Task id; ``om.runtime.result(id)`` finds it again.
    status : str
        ``PENDING``, ``STARTED``, ``SUCCESS`` or ``FAILURE``.
    """

    id: str

    @property
    def status(self) -> str:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the task finished (succeeded or failed)."""
        return self.status in (SUCCESS, FAILURE)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises TaskFailed if the task raised, TaskTimeout if not done in time."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"


def failure_of(exc: BaseException) -> TaskFailed:
    """A TaskFailed carrying ``exc``'s type, message and formatted traceback."""
    if isinstance(exc, TaskFailed):
        return exc
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = str(exc.args[0]) if isinstance(exc, OmopsError) and exc.args else str(exc)
    return TaskFailed(type(exc).__name__, message, text)


class DoneResult(TaskResult):
    """A task that ran to completion in this process."""

    def __init__(
        self, value: Any = None, error: TaskFailed | None = None, task_id: str | None = None
    ) -> None:
        self.id = task_id or uuid.uuid4().hex
        self._value, self._error = value, error

    @property
    def status(self) -> str:
        return FAILURE if self._error is not None else SUCCESS

    def get(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    @classmethod
    def run(cls, function: Callable[[], Any], task_id: str | None = None) -> DoneResult:
        try:
            return cls(function(), task_id=task_id)
        except Exception as exc:  # the task's failure is the result, like on a worker
            return cls(error=failure_of(exc), task_id=task_id)


class FutureResult(TaskResult):
    """A task running in a local process pool (or a follow-up computed from others)."""

    def __init__(self, future: Future, task_id: str | None = None) -> None:
        self.id = task_id or uuid.uuid4().hex
        self._future = future

    @property
    def status(self) -> str:
        if not self._future.done():
            return STARTED if self._future.running() else PENDING
        return FAILURE if self._future.exception() is not None else SUCCESS

    def get(self, timeout: float | None = None) -> Any:
        try:
            return self._future.result(timeout=timeout)
        except FutureTimeout:
            raise TaskTimeout(
                f"task {self.id} did not finish within {timeout} s; call get() again "
                "with a longer timeout, or check the worker"
            ) from None
        except TaskFailed:
            raise
        except Exception as exc:
            raise failure_of(exc) from None


def gather(results: Sequence[TaskResult], then: Callable[[list[Any]], Any] | None = None) -> Future:
    """A future of all ``results`` (optionally passed through ``then``), resolved in a thread."""
    future: Future = Future()

    def wait() -> None:
        try:
            values = [r.get() for r in results]
            future.set_result(then(values) if then else values)
        except BaseException as exc:  # handed to whoever calls get()
            future.set_exception(exc)

    future.set_running_or_notify_cancel()
    threading.Thread(target=wait, daemon=True).start()
    return future

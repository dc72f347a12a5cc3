"""The task functions: pure, names and JSON in, JSON out.

Every executor runs tasks through :func:`execute`. A task message is a task
name and a JSON payload; it never carries a pickle. Objects a task needs are
read from the store by name; what it produces is stored by name or returned
as JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from omops.errors import NotFound
from omops.omega import Omega
from omops.runtime._tracking import TaskTracking
from omops.runtime.actions import perform
from omops.runtime.jobs import job_task
from omops.runtime.serialize import to_json

__all__ = ["TASKS", "TEMP_PREFIX", "execute", "to_json"]

TEMP_PREFIX = "_temp/"


def model_action(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Run a model action (fit, predict, score, gridsearch ...) by name: see :func:`perform`."""
    return perform(
        om,
        payload["name"],
        payload["action"],
        payload.get("X"),
        payload.get("Y"),
        kwargs=payload.get("kwargs"),
        result_name=payload.get("result_name"),
        previous=previous,
    ).value()


def ping(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Answer with the payload: checks that a worker runs tasks."""
    import os
    import socket

    return {"pong": payload.get("data"), "host": socket.gethostname(), "pid": os.getpid()}


def script(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Run a stored script package's ``run(om, **kwargs)``: see :func:`run_script`."""
    from omops.runtime.scripts import run_script  # venvs and subprocesses: only when asked

    return run_script(om, payload["name"], payload.get("kwargs"))


def collect(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Reducer for mapreduce() when none is given: the list of mapped results."""
    return previous


TASKS: Mapping[str, Callable[[Omega, Mapping[str, Any], Any], Any]] = MappingProxyType(
    {
        "omops.model": model_action,
        "omops.ping": ping,
        "omops.collect": collect,
        "omops.script": script,
        "omops.job": job_task,
    }
)


def drop_temporaries(om: Omega, payload: Mapping[str, Any], *, failed: bool = False) -> None:
    """Remove the temporary datasets that carried in-memory inputs.

    After a failure, also those listed in ``drop_on_failure``: the inputs of
    the batch calls that will never run now (the later steps of a sequence,
    the reducer of a mapreduce).
    """
    names = [
        *(payload.get("temp") or ()),
        *((payload.get("drop_on_failure") or ()) if failed else ()),
    ]
    for name in names:
        if name.startswith(TEMP_PREFIX):
            om.datasets.drop(name, force=True)


def execute(om: Omega, task: str, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Run one task; temporary inputs are removed whether it succeeds or fails.

    A payload with ``record: <task id>`` also writes its outcome to the
    catalog's task log, where any process (e.g. any REST server) finds it.
    """

    record = payload.get("record")
    succeeded = False
    try:
        function = TASKS.get(task)
        if function is None:
            raise NotFound(f"task {task!r} is not known; known tasks are {', '.join(TASKS)}")
        with TaskTracking(om, task, payload) as tracking:
            try:
                result = function(om, payload, previous)
            except Exception as exc:
                tracking.failure(exc)
                raise
            tracking.success(result)
        succeeded = True
    except Exception as exc:
        if record:
            om.catalog.task_log.finished(record, error=_error_of(exc))
        raise
    finally:
        drop_temporaries(om, payload, failed=not succeeded)
    if record:
        om.catalog.task_log.finished(record, result=result)
    return result


def _error_of(exc: BaseException) -> dict[str, Any]:
    import traceback

    if hasattr(exc, "exc_type"):  # a TaskFailed from a nested task, or a script's failure
        found = {"type": exc.exc_type, "message": exc.exc_message}
        remote = getattr(exc, "remote_traceback", "")
        return {**found, "traceback": remote[-4000:]} if remote else found
    message = str(exc.args[0]) if exc.args else str(exc)
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def temp_name() -> str:
    """A fresh name for a temporary input dataset."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}"

"""Tracking seen from a task: task events, profiling samples, tracked predictions.

A task payload may carry ``tracking: {experiment_id, experiment, run,
provider, interval}`` (set by ``with om.runtime.experiment(...)``); then the
task logs ``task_call``, ``task_success`` or ``task_failure`` (and, with the
``profiling`` provider, CPU and memory samples) wherever it runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from omops._system import Sampler
from omops.catalog.tracking import EventWriter, event_row
from omops.omega import Omega
from omops.runtime._state import state_of

__all__ = ["TaskTracking", "flush_events", "log_failure", "log_prediction", "writer_for"]

#: Inputs up to this many rows are logged whole; larger ones as a sample and a hash.
SAMPLE_ROWS = 10
FULL_ROWS = 100
#: Characters of an error message kept in a failed prediction's event.
ERROR_CHARS = 500


def writer_for(om: Omega) -> EventWriter:
    """The write-behind event writer of ``om`` in this process.

    A forked child (Celery pool) gets its own: the parent's thread does not
    exist there. Queued events are written at exit and by ``om.close()``.
    """
    return state_of(om).writer(om)


def flush_events(om: Omega) -> None:
    """Write the events this process queued for ``om`` (if it queued any)."""
    state_of(om).flush()


def _summary(value: Any, limit: int = 2000) -> Any:
    """A result small enough for an event: lists are cut to ``limit`` items."""
    if isinstance(value, list) and len(value) > limit:
        return {"head": value[:limit], "length": len(value)}
    return value


class TaskTracking:
    """Context manager around one task run; inactive without a tracking context."""

    def __init__(self, om: Omega, task: str, payload: Mapping[str, Any]) -> None:
        context = payload.get("tracking") or {}
        self.active = bool(context) and context.get("provider") != "notrack"
        self.om, self.task, self.payload, self.context = om, task, payload, context
        self._sampler: Sampler | None = None

    def _log(self, event: str, key: str | None, value: Any, step: int | None = None) -> None:
        row = event_row(self.context["experiment_id"], self.context["run"], event, key, value, step)
        self.om.catalog.tracking.log([row])

    @property
    def key(self) -> str:
        action = self.payload.get("action")
        return f"{self.task}.{action}" if action else self.task

    def __enter__(self) -> TaskTracking:
        if not self.active:
            return self
        args = {
            k: self.payload.get(k)
            for k in ("name", "action", "X", "Y", "kwargs")
            if self.payload.get(k) is not None
        }
        self._log("task_call", self.key, {"args": args, "task_id": self.payload.get("record")})
        if self.context.get("provider") == "profiling":
            interval = float(self.context.get("interval") or 1.0)
            self._sampler = Sampler(lambda s: self._log("system", "profile", s), interval).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def success(self, result: Any) -> None:
        if not self.active:
            return
        if self.payload.get("action") == "score" and isinstance(result, (int, float)):
            self._log("metric", "score", result)
        self._log("task_success", self.key, {"result": _summary(result)})

    def failure(self, exc: BaseException) -> None:
        if self.active:
            self._log("task_failure", self.key, {"type": type(exc).__name__, "message": str(exc)})


def _trackers(om: Omega, model: str) -> list[tuple[int, int]]:
    """(experiment id, run) of experiments tracking ``model``, cached for 2 s."""

    def load() -> list[tuple[int, int]]:
        tracking = om.catalog.tracking
        found = []
        for experiment_id, _name in tracking.trackers(om.bucket, model):
            run = tracking.latest_run(experiment_id) or tracking.start_run(experiment_id, "simple")
            found.append((experiment_id, run))
        return found

    return state_of(om).trackers_of((om.bucket, model), load)


def forget_trackers(om: Omega) -> None:
    """Drop ``om``'s cache of tracked models (after track/untrack)."""
    state_of(om).trackers.clear()


def _split(frame: Any) -> dict[str, Any]:
    """``frame.to_dict(orient='split')``, without its per-cell Python (10x faster on 1 row)."""
    return {
        "index": frame.index.tolist(),
        "columns": frame.columns.tolist(),
        "data": frame.to_numpy(dtype=object).tolist(),
    }


def _inputs(X: Any, columns: Sequence[str] | None = None) -> dict[str, Any]:  # noqa: N803
    """The input of a prediction: whole up to 100 rows, else 10 rows and a SHA-256 of all.

    The 10 rows are spread evenly over the input (first, last and between), so
    that drift computed from samples of large batches sees all of each batch.
    """
    import pandas as pd

    if columns is not None and getattr(X, "ndim", 0) == 2 and len(X) <= FULL_ROWS:
        # An array from the array lane: the same record without building a frame.
        rows = len(X)
        data = {"index": list(range(rows)), "columns": list(columns), "data": X.tolist()}
        return {"rows": rows, "data": data}
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=columns)
    rows = len(frame)
    if rows <= FULL_ROWS:
        return {"rows": rows, "data": _split(frame)}
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    spread = frame.iloc[_spread(rows, SAMPLE_ROWS)]
    return {"rows": rows, "sample": _split(spread), "sha256": digest.hexdigest()}


def _spread(rows: int, count: int) -> Any:
    """``count`` row positions spread evenly over ``rows`` (the first and the last included)."""
    import numpy as np

    return np.linspace(0, rows - 1, count).round().astype("int64")


def log_prediction(
    om: Omega,
    model: str,
    revision: str,
    X: Any,
    result: Any,  # noqa: N803
    *,
    action: str = "predict",
    columns: Sequence[str] | None = None,
    latency_ms: float | None = None,
) -> None:
    """Queue a ``predict`` event for every experiment tracking ``model`` (write-behind).

    Called for the predicting actions (see :data:`omops.runtime.actions.ACTIONS`).
    ``columns`` names the columns of an array ``X``; ``latency_ms`` is how long
    the action took where it ran. The event's value has ``status: 'ok'``.
    """
    trackers = _trackers(om, model)
    if not trackers:
        return
    if hasattr(result, "tolist"):
        result = result.tolist()
    value = {
        "model": model,
        "revision": revision,
        "action": action,
        "status": "ok",
        "latency_ms": _millis(latency_ms),
        "input": _inputs(X, columns),
        "output": _summary(result, FULL_ROWS),
    }
    _queue(om, trackers, model, value)


def log_failure(
    om: Omega,
    model: str,
    revision: str | None,
    X: Any,  # noqa: N803
    exc: BaseException,
    *,
    action: str = "predict",
    columns: Sequence[str] | None = None,
    latency_ms: float | None = None,
) -> None:
    """Queue a ``predict`` event with ``status: 'error'`` for a prediction that failed.

    ``revision`` is None when the model's revision could not be resolved, ``X``
    None when the input could not be read. Never raises: a failure to describe
    the input must not hide the error the caller gets.
    """
    trackers = _trackers(om, model)
    if not trackers:
        return
    value: dict[str, Any] = {
        "model": model,
        "revision": revision,
        "action": action,
        "status": "error",
        "latency_ms": _millis(latency_ms),
        "error": {"type": type(exc).__name__, "message": str(exc)[:ERROR_CHARS]},
    }
    if X is not None:
        try:
            value["input"] = _inputs(X, columns)
        except Exception:  # an input pandas cannot frame: the error is logged without it
            value["input"] = None
    _queue(om, trackers, model, value)


def _millis(latency_ms: float | None) -> float | None:
    return None if latency_ms is None else round(float(latency_ms), 3)


def _queue(om: Omega, trackers: list[tuple[int, int]], model: str, value: Any) -> None:
    writer = writer_for(om)
    for experiment_id, run in trackers:
        writer.put(event_row(experiment_id, run, "predict", model, value))

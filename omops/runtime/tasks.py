"""The task functions: pure, names and JSON in, JSON out.

Every executor runs tasks through :func:`execute`. A task message is a task
name and a JSON payload; it never carries a pickle. Objects a task needs are
read from the store by name; what it produces is stored by name or returned
as JSON.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from omops.errors import InvalidData, NotFound, PluginError
from omops.names import parse_reference
from omops.omega import Omega
from omops.plugins.base import ActionOutcome
from omops.runtime._arrays import ARRAY_ACTIONS, ARRAYS, frame_array
from omops.runtime._tracking import PREDICT_ACTIONS, TaskTracking, log_prediction

__all__ = ["TASKS", "TEMP_PREFIX", "execute", "to_json"]

TEMP_PREFIX = "_temp/"
_MODEL_CACHE_SIZE = 32


def to_json(value: Any) -> Any:
    """Plain JSON values from NumPy/pandas results (arrays become lists)."""
    pandas = _pandas_if_loaded()
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return orjson.loads(value.to_json(orient="split", date_format="iso"))
        if isinstance(value, (pandas.Series, pandas.Index)):
            value = value.to_numpy()
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_numpy_default)
        return orjson.loads(text)
    except TypeError as exc:
        raise InvalidData(
            f"the task result of type {type(value).__name__} is not JSON-able; "
            "store it with rName= instead"
        ) from exc


def _numpy_default(value: Any) -> Any:
    """What orjson leaves to us: non-contiguous or object arrays, NumPy scalars it skips."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _pandas_if_loaded() -> Any:
    return sys.modules.get("pandas")


class _ModelCache:
    """Loaded models by (catalog, bucket, name, revision): a revision never changes."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[tuple[str, str, str, str], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, str], load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = load()
        with self._lock:
            self._items[key] = model
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return model


MODELS = _ModelCache(_MODEL_CACHE_SIZE)


def _load_data(om: Omega, spec: Any) -> Any:
    """Read a dataset argument: ``'name[...]@rev'`` or ``{'name': ..., **filters}``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return om.datasets.get(spec)
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        filters = {k: v for k, v in spec.items() if k != "name"}
        return om.datasets.get(spec["name"], **filters)
    raise InvalidData(
        f"a data argument must be a dataset name or {{'name': ..., **filters}}, got {spec!r}"
    )


def _as_target(y: Any) -> Any:
    """A one-column frame as a Series: what estimators expect for y."""
    pandas = _pandas_if_loaded()
    if pandas is not None and isinstance(y, pandas.DataFrame) and y.shape[1] == 1:
        return y.iloc[:, 0]
    return y


def _store_result(om: Omega, name: str, result: Any) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    if isinstance(result, np.ndarray):
        result = pd.DataFrame(result if result.ndim == 2 else {"value": result})
        result.columns = [str(c) for c in result.columns]
    meta = om.datasets.put(result, name, append=False)
    return {"dataset": name, "revision": meta.revision, "rows": meta.rows}


def model_action(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Run a model action (fit, predict, score, gridsearch ...) by name."""
    ref = parse_reference(payload["name"])
    action = payload["action"]
    # One indexed query for the revision (as om.models.metadata would give, ~10x cheaper).
    meta = om.catalog.lookup(om.bucket, "models", ref.name, ref.ref)
    plugin = om.plugins.get(meta.kind)
    if action not in plugin.actions:
        raise PluginError(
            f"model {ref.name!r} ({meta.kind}) has no action {action!r}; "
            f"it has {', '.join(sorted(plugin.actions)) or 'none'}"
        )
    changes = action in ("fit", "partial_fit", "fit_transform", "gridsearch")
    key = (om.catalog.url, om.bucket, ref.name, meta.revision)
    load = lambda: om.models.get(f"{ref.name}@{meta.revision}")  # noqa: E731
    model = load() if changes else MODELS.get(key, load)
    X = _load_data(om, payload.get("X"))  # noqa: N806
    if X is None and previous is not None:
        X = previous  # noqa: N806 - sequence(): the previous step's result feeds this one
    y = _as_target(_load_data(om, payload.get("Y")))
    kwargs = dict(payload.get("kwargs") or {})
    array = None
    if action in ARRAY_ACTIONS and y is None and not kwargs:
        array = frame_array(X, meta.kind_meta.get("feature_names"))
    if array is None:
        outcome = plugin.perform(model, action, X, y, **kwargs)
    else:  # the same answer, ~1 ms sooner (see omops.runtime._arrays)
        _, result = ARRAYS.answer(
            (*key, action),
            array,
            lambda: plugin.takes_arrays(model),
            lambda values: plugin.perform_array(model, action, values).result,
            lambda: (X, plugin.perform(model, action, X, None).result),
        )
        outcome = ActionOutcome(result=result)
    summary: dict[str, Any] = {"model": ref.name}
    if outcome.model is not None:
        summary["revision"] = om.models.put(outcome.model, ref.name).revision
    for suffix, obj in outcome.models.items():
        om.models.put(obj, f"{ref.name}/{suffix}")
        summary[suffix] = f"{ref.name}/{suffix}"
    for suffix, obj in outcome.datasets.items():
        om.datasets.put(obj, f"{ref.name}/{suffix}", append=False)
    if action in PREDICT_ACTIONS:
        log_prediction(om, ref.name, meta.revision, X, outcome.result, action=action)
    if payload.get("result_name"):
        return _store_result(om, payload["result_name"], outcome.result)
    if action in ("fit", "partial_fit"):
        return summary
    if action == "gridsearch":
        return {**summary, **to_json(outcome.result)}
    return to_json(outcome.result)


def ping(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Answer with the payload: checks that a worker runs tasks."""
    import os
    import socket

    return {"pong": payload.get("data"), "host": socket.gethostname(), "pid": os.getpid()}


def collect(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """Reducer for mapreduce() when none is given: the list of mapped results."""
    return previous


TASKS: dict[str, Callable[[Omega, Mapping[str, Any], Any], Any]] = {
    "omops.model": model_action,
    "omops.ping": ping,
    "omops.collect": collect,
}


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

    if hasattr(exc, "exc_type"):  # a TaskFailed from a nested task
        return {"type": exc.exc_type, "message": exc.exc_message}
    message = str(exc.args[0]) if exc.args else str(exc)
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def temp_name() -> str:
    """A fresh name for a temporary input dataset."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}"

"""Model actions: one table of them, and the one function that performs them.

Every caller performs a model action through :func:`perform`: the REST
server (sync requests, and async ones through the task it submits), the local
and Celery executors' tasks, the CLI and ``om.runtime.model(...)``. So the
same input gets the same answer, or the same error, on every path:

* the revision is resolved on every call (a new ``latest`` is used at once);
* the model is loaded once per revision and Omega (not for actions that
  change it);
* inputs are read and aligned the same way (:mod:`omops.runtime.inputs`):
  columns matched by name, missing ones an :class:`~omops.errors.InvalidData`;
* the model's own complaints about an input (``ValueError``, ``TypeError``
  ...) become ``InvalidData`` with the model's message;
* a model that takes arrays gets one where that gives the same answer
  (:mod:`omops.runtime._arrays`);
* changed models are stored as new revisions, predictions of tracked models
  logged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from omops.errors import InvalidData, InvalidName, InvalidQuery, OmopsError
from omops.names import Reference, parse_reference
from omops.plugins.base import ActionOutcome
from omops.runtime._arrays import Rows, arrow_rows, frame_array, numeric_rows
from omops.runtime._state import LoadedModel, state_of
from omops.runtime._tracking import log_failure, log_prediction
from omops.runtime.inputs import JsonBody, align, read_input
from omops.runtime.serialize import to_json

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["ACTIONS", "Action", "Performed", "action", "check_inputs", "perform"]

Shape = Literal["values", "score", "summary", "search"]


@dataclass(frozen=True)
class Action:
    """What an action is.

    Attributes
    ----------
    name : str
    changes_model : bool
        Whether it stores the changed model as a new revision (fit ...).
    prediction : bool
        Whether it is logged as a prediction for experiments tracking the model.
    role : str
        The API key role it needs over REST: ``read`` or ``write``.
    result : str
        What it answers: ``values`` (one per row, or a table), ``score`` (a
        number), ``summary`` (``{'model', 'revision'}``) or ``search``
        (a summary with the best parameters and score).
    needs_input : bool
        Whether it needs ``X``.
    needs_targets : bool
        Whether it needs ``Y``.
    arrays : bool
        Whether the array lane may serve it (no targets, no arguments).
    """

    name: str
    changes_model: bool
    prediction: bool
    role: Literal["read", "write"]
    result: Shape
    needs_input: bool = True
    needs_targets: bool = False
    arrays: bool = False

    @property
    def runs_async(self) -> bool:
        """Whether REST answers 202 with a task by default (it changes the model)."""
        return self.changes_model


def _predicting(name: str) -> Action:
    return Action(name, False, True, "read", "values", arrays=True)


#: Every model action, by name. Plugins say which of them their kind has.
ACTIONS: Mapping[str, Action] = MappingProxyType(
    {
        "fit": Action("fit", True, False, "write", "summary"),
        "partial_fit": Action("partial_fit", True, False, "write", "summary"),
        "predict": _predicting("predict"),
        "predict_proba": _predicting("predict_proba"),
        "decision_function": _predicting("decision_function"),
        "transform": _predicting("transform"),
        "fit_transform": Action("fit_transform", True, False, "write", "values"),
        "score": Action("score", False, False, "read", "score", needs_targets=True),
        "gridsearch": Action("gridsearch", True, False, "write", "search", needs_targets=False),
    }
)


def action(name: str) -> Action:
    """The action called ``name``; InvalidQuery naming the known ones otherwise."""
    found = ACTIONS.get(name)
    if found is None:
        raise InvalidQuery(f"action {name!r} is not one of {', '.join(ACTIONS)}")
    return found


@dataclass
class Performed:
    """What :func:`perform` did.

    Attributes
    ----------
    action : Action
    model : str
        The model's name (without ``@tag``).
    revision : str
        The revision that answered, or the new one a changing action stored.
    rows : int or None
        Rows of the input.
    result : object
        The action's raw result (an array, a number, a frame ...).
    stored : dict or None
        Where the result was stored, with ``result_name``.
    extras : dict
        Other objects stored by name (a grid search and its results).
    """

    action: Action
    model: str
    revision: str
    rows: int | None
    result: Any
    stored: dict[str, Any] | None = None
    extras: dict[str, str] = field(default_factory=dict)

    def value(self) -> Any:
        """The JSON-able answer, by the action's result shape."""
        if self.stored is not None:
            return self.stored
        summary = {"model": self.model, "revision": self.revision, **self.extras}
        if self.action.result == "summary":
            return summary
        if self.action.result == "search":
            return {**summary, **to_json(self.result)}
        return to_json(self.result)


def perform(
    om: Omega,
    name: str,
    action_name: str,
    X: Any = None,  # noqa: N803
    Y: Any = None,  # noqa: N803
    *,
    kwargs: Mapping[str, Any] | None = None,
    result_name: str | None = None,
    previous: Any = None,
    arrays: bool = True,
) -> Performed:
    """Perform ``action_name`` on the stored model ``name`` (``name@tag`` for a revision).

    Parameters
    ----------
    om : Omega
        Where the model and the data are; its context keeps loaded models.
    name : str
        The model, ``name`` or ``name@tag``/``name@<revision prefix>``.
    action_name : str
        One of :data:`ACTIONS` that the model's plugin has.
    X, Y : object, optional
        Inputs and targets: a dataset reference (``'stats[^sales]'``,
        ``{'name': 'stats', 'sales__gte': 100}``), data in memory, a
        :class:`~omops.runtime.inputs.JsonBody` or an Arrow table.
    kwargs : dict, optional
        Keyword arguments for the model's method.
    result_name : str, optional
        Store the result as this dataset and answer where it went.
    previous : object, optional
        In a sequence, the previous step's result: the input when ``X`` is None.
    arrays : bool, default=True
        Whether the array lane may be used.

    Returns
    -------
    Performed
    """
    spec = action(action_name)
    ref = parse_reference(name)
    if ref.columns is not None:
        raise InvalidName(f"a model reference takes no column selector: {name!r}")
    attempt = _Attempt()
    if not spec.prediction:
        return _perform(om, ref, spec, X, Y, kwargs, result_name, previous, arrays, attempt)
    # Predictions of tracked models are logged with their latency, failed ones too.
    started = time.perf_counter()
    try:
        performed = _perform(om, ref, spec, X, Y, kwargs, result_name, previous, arrays, attempt)
    except Exception as exc:
        log_failure(
            om,
            ref.name,
            attempt.revision,
            attempt.x,
            exc,
            action=action_name,
            columns=attempt.columns,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        raise
    log_prediction(
        om,
        ref.name,
        performed.revision,
        attempt.x,
        performed.result,
        action=action_name,
        columns=attempt.columns,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    return performed


@dataclass
class _Attempt:
    """How far :func:`_perform` got: what a tracked prediction's event reports."""

    revision: str | None = None
    x: Any = None
    columns: list[str] | None = None


def _perform(
    om: Omega,
    ref: Reference,
    spec: Action,
    X: Any,  # noqa: N803
    Y: Any,  # noqa: N803
    kwargs: Mapping[str, Any] | None,
    result_name: str | None,
    previous: Any,
    arrays: bool,
    attempt: _Attempt,
) -> Performed:
    action_name = spec.name
    rev = om.catalog.lookup(om.bucket, "models", ref.name, ref.ref)
    attempt.revision = rev.revision
    plugin = om.plugins.get(rev.kind)
    if action_name not in plugin.actions:
        raise InvalidQuery(
            f"model {ref.name!r} ({rev.kind}) has no action {action_name!r}; "
            f"it has {', '.join(sorted(plugin.actions)) or 'none'}"
        )
    state = state_of(om)
    key = (om.bucket, ref.name, rev.revision)

    def load() -> LoadedModel:
        return LoadedModel(om.models.get(f"{ref.name}@{rev.revision}"), plugin.array_view)

    loaded = load() if spec.changes_model else state.models.get_or_make(key, load)
    expected = rev.kind_meta.get("feature_names")
    kwargs = dict(kwargs or {})
    lane = arrays and spec.arrays and Y is None and not kwargs

    def inputs() -> tuple[Any, Any]:
        x = read_input(om, X)
        if x is None:
            x = previous  # sequence(): the previous step's result feeds this one
        y = read_input(om, Y, target=True)
        check_inputs(spec, x, y)
        return align(x, expected), y

    rows = _lane_rows(X, expected) if lane else None
    read: Any = None  # the input as the usual path reads it, once read
    if rows is None:
        read, y = inputs()
        attempt.x = read
        laned = frame_array(read, expected) if lane else None
        rows = None if laned is None else Rows(laned, list(read.columns))
        x = read
    else:
        attempt.x, attempt.columns = rows.array, rows.columns

    def usual() -> tuple[Any, Any]:
        # The lane's check: the usual input, and the model's answer to it.
        given = read if read is not None else inputs()[0]
        return given, _call(plugin.perform, loaded.model, action_name, given, None).result

    if rows is not None:
        x, result = state.lane.answer(
            (*key, action_name),
            rows.array,
            lambda: plugin.takes_arrays(loaded.model),
            lambda array: _call(plugin.perform_array, loaded.for_arrays, action_name, array).result,
            usual,
        )
        outcome = ActionOutcome(result=result)
    else:
        outcome = _call(plugin.perform, loaded.model, action_name, x, y, **kwargs)
    attempt.x = x
    attempt.columns = rows.columns if rows is not None and x is rows.array else None
    performed = Performed(spec, ref.name, rev.revision, _length(x), outcome.result)
    _store_outcome(om, performed, outcome)
    if result_name:
        performed.stored = _store_result(om, result_name, outcome.result)
    return performed


def _lane_rows(X: Any, expected: list[str] | None) -> Rows | None:  # noqa: N803
    """A body's numbers as an array without building a frame, where that is safe."""
    if isinstance(X, JsonBody):
        return numeric_rows(X.payload, expected)
    if isinstance(X, Rows):
        return X
    if type(X).__name__ == "Table" and type(X).__module__.startswith("pyarrow"):
        return arrow_rows(X, expected)
    return None


def _usual(plugin: Any, model: Any, action_name: str, frame: Any) -> tuple[Any, Any]:
    """The input as the usual path reads it, and the model's answer to it."""
    return frame, _call(plugin.perform, model, action_name, frame, None).result


def check_inputs(spec: Action, x: Any, y: Any) -> None:
    """Errors every path reports alike, before the model sees the input."""
    if x is None:
        if spec.needs_input:
            raise InvalidData(
                f"{spec.name} needs input data: give X (a dataset name, a DataFrame, "
                "or over REST a JSON body or ?datax=<dataset>)"
            )
        return
    rows = _length(x)
    if rows == 0:
        raise InvalidData(f"the input has no rows; {spec.name} needs at least one")
    if spec.needs_targets and y is None:
        raise InvalidData(
            f"{spec.name} needs targets: give Y (a dataset name or values; over REST "
            '"y": [...] in the body or ?datay=<dataset>)'
        )
    if y is not None and rows is not None and _length(y) != rows:
        raise InvalidData(f"there are {rows} input rows but {_length(y)} targets")


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _call(method: Any, model: Any, action_name: str, *inputs: Any, **kwargs: Any) -> ActionOutcome:
    """Run a plugin's perform; the model's complaints about the input become InvalidData."""
    try:
        return method(model, action_name, *inputs, **kwargs)
    except OmopsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidData(f"the model could not {action_name} this input: {exc}") from None


def _store_outcome(om: Omega, performed: Performed, outcome: ActionOutcome) -> None:
    name = performed.model
    if outcome.model is not None:
        performed.revision = om.models.put(outcome.model, name).revision
    for suffix, obj in outcome.models.items():
        om.models.put(obj, f"{name}/{suffix}")
        performed.extras[suffix] = f"{name}/{suffix}"
    for suffix, obj in outcome.datasets.items():
        om.datasets.put(obj, f"{name}/{suffix}", append=False)


def _store_result(om: Omega, name: str, result: Any) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    if isinstance(result, np.ndarray):
        result = pd.DataFrame(result if result.ndim == 2 else {"value": result})
        result.columns = [str(c) for c in result.columns]
    meta = om.datasets.put(result, name, append=False)
    return {"dataset": name, "revision": meta.revision, "rows": meta.rows}

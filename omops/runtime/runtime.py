"""``om.runtime``: one API whether work runs here or on a cluster of workers."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from omops.config import mask_url
from omops.errors import InvalidData, InvalidName
from omops.names import check_tag, parse_reference
from omops.runtime._state import state_of
from omops.runtime.actions import action as action_spec
from omops.runtime.executors import Executor, executor_for
from omops.runtime.jobs import JobProxy
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import TaskResult
from omops.runtime.tasks import temp_name

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["ModelProxy", "Runtime", "ScriptProxy"]


class Runtime:
    """Run model actions and batches locally or on Celery workers.

    ``om.runtime`` uses Celery when a broker is configured (``OMOPS_BROKER``),
    else the local executor. Each modifier returns a new Runtime:
    ``mode(local=True)`` forces local execution, ``require('gpu')`` sends work
    to the ``gpu`` queue.

    Examples
    --------
    >>> import pandas as pd, omops, tempfile
    >>> from sklearn.linear_model import LinearRegression
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> _ = om.datasets.put(pd.DataFrame({'x': [1., 2., 3.], 'y': [2., 4., 6.]}), 'xy')
    >>> _ = om.models.put(LinearRegression(), 'lr')
    >>> om.runtime.model('lr').fit('xy[x]', 'xy[y]').get()['model']
    'lr'
    >>> [round(v, 6) for v in om.runtime.model('lr').predict('xy[x]').get()]
    [2.0, 4.0, 6.0]
    """

    def __init__(
        self,
        om: Omega,
        *,
        local: bool = False,
        label: str | None = None,
        batch: list[TaskCall] | None = None,
    ) -> None:
        self.om = om
        self.local = local
        self.label = label or om.settings.label
        self._batch = batch

    def __repr__(self) -> str:
        where = (
            "local"
            if self.local or not self.om.broker
            else f"{mask_url(self.om.broker)} queue {self.label!r}"
        )
        return f"<Runtime {where}, bucket {self.om.bucket!r}>"

    @property
    def executor(self) -> Executor:
        """The executor this runtime submits to (see :mod:`omops.runtime.executors`)."""
        return executor_for(self.om, local=self.local)

    def mode(self, local: bool = True) -> Runtime:
        """Force local execution (``local=True``) or use the configured executor."""
        return Runtime(self.om, local=local, label=self.label, batch=self._batch)

    def require(self, label: str) -> Runtime:
        """Send work to workers started with ``--label LABEL`` (queue ``LABEL``).

        Without a broker every task runs locally and the label has no effect;
        that is said once per Omega (a ``UserWarning``).
        """
        label = check_tag(label)
        if (self.local or not self.om.broker) and label != self.om.settings.label:
            if state_of(self.om).warn_once(f"label:{label}"):
                warnings.warn(
                    f"require({label!r}) has no effect on the local executor: tasks run in "
                    "this process. Set OMOPS_BROKER to send them to workers started with "
                    f"`om runtime worker --label {label}`",
                    UserWarning,
                    stacklevel=2,
                )
        return Runtime(self.om, local=self.local, label=label, batch=self._batch)

    def model(self, name: str) -> ModelProxy:
        """Actions on the stored model ``name`` (``name@tag`` for a revision)."""
        ref = parse_reference(name)
        if ref.columns is not None:
            raise InvalidName(f"a model reference takes no column selector: {name!r}")
        return ModelProxy(self, name)

    def script(self, name: str) -> ScriptProxy:
        """Runs of the stored script package ``name`` (``name@tag`` for a revision)."""
        return ScriptProxy(self, name)

    def submit_script(self, name: str, **kwargs: Any) -> str:
        """Start a script run without waiting; returns the task id (see submit_model_action)."""
        call = self.script(name).call(**kwargs)
        task_id = uuid.uuid4().hex
        self.om.catalog.task_log.submitted(task_id, bucket=self.om.bucket, task=call.task)
        recorded = replace(call, payload={**call.payload, "record": task_id})
        self.executor.submit(recorded, task_id=task_id, background=True)
        return task_id

    def job(self, name: str, *, timeout: float | None = None) -> JobProxy:
        """Runs of the stored notebook ``name``: ``.run(**parameters)``, ``.map(items)``.

        ``timeout``: seconds each cell may run (see :class:`omops.runtime.jobs.JobProxy`).
        """
        return JobProxy(self, name, timeout=timeout)

    def ping(self, data: Any = None) -> TaskResult:
        """A no-op task: answers ``{'pong': data, 'host', 'pid'}`` from where it ran."""
        return self.submit(TaskCall("omops.ping", {"data": data}, self.label, self.om.bucket))

    def result(self, task_id: str) -> TaskResult:
        """A task's result by id."""
        return self.executor.result(task_id)

    def submit_model_action(
        self,
        name: str,
        action: str,
        X: Any = None,
        Y: Any = None,  # noqa: N803
        **kwargs: Any,
    ) -> str:
        """Start a model action without waiting; returns the task id.

        Whoever runs the task records its outcome in the catalog's task log,
        so ``om.catalog.task_log.get(id)`` (and ``GET /api/v1/task/{id}``)
        answers from any process.
        """
        call = self.model(name).call(action, X, Y, **kwargs)
        task_id = uuid.uuid4().hex
        self.om.catalog.task_log.submitted(task_id, bucket=self.om.bucket, task=call.task)
        recorded = replace(call, payload={**call.payload, "record": task_id})
        self.executor.submit(recorded, task_id=task_id, background=True)
        return task_id

    def experiment(self, name: str, provider: str = "simple", **options: Any) -> Any:
        """An experiment; ``with`` it, tasks submitted in the block are tracked in a new run.

        See :class:`omops.tracking.Experiment`.
        """
        from omops.tracking import Experiment  # the tracking layer builds on this one

        return Experiment(self.om, name, provider, **options)

    def experiments(self) -> list[dict[str, Any]]:
        """Experiments of this bucket with their number of runs and events."""
        return self.om.catalog.tracking.list(self.om.bucket)

    def status(self) -> dict[str, Any]:
        """Where tasks run: the executor, and its workers and queues (Celery)."""
        return self.executor.status()

    # -- submitting and batching ------------------------------------------

    def submit(self, call: TaskCall) -> TaskResult | None:
        if self._batch is not None:
            self._batch.append(call)
            return None
        return self.executor.submit(call)

    @contextmanager
    def _collect(
        self, mode: Literal["parallel", "sequence", "mapreduce"]
    ) -> Iterator[_BatchRuntime]:
        batch = _BatchRuntime(self, mode)
        yield batch

    def parallel(self) -> Any:
        """Collect calls and run them at once: ``with om.runtime.parallel() as crt: ...; crt.run()``."""
        return self._collect("parallel")

    def sequence(self) -> Any:
        """Collect calls and run them in order; each step's result feeds the next."""
        return self._collect("sequence")

    def mapreduce(self) -> Any:
        """Collect calls: all but the last run at once, the last gets their results."""
        return self._collect("mapreduce")


class _BatchRuntime(Runtime):
    """The runtime inside ``with parallel()/sequence()/mapreduce()``: calls are collected."""

    def __init__(self, parent: Runtime, mode: Literal["parallel", "sequence", "mapreduce"]) -> None:
        super().__init__(parent.om, local=parent.local, label=parent.label, batch=[])
        self._mode = mode
        self._parent = parent

    def run(self) -> TaskResult:
        """Submit the collected calls; ``.get()`` gives the list (or the final) result."""
        calls = tuple(self._batch or ())
        if not calls:
            raise InvalidData(
                f"{self._mode}() collected no calls; call e.g. crt.model(...).predict(...)"
            )
        if self._mode == "mapreduce" and len(calls) == 1:
            calls = (*calls, TaskCall("omops.collect", {}, self.label, self.om.bucket))
        self._batch = []
        return self._parent.executor.submit(Batch(self._mode, _drop_on_failure(self._mode, calls)))


def _drop_on_failure(mode: str, calls: tuple[TaskCall, ...]) -> tuple[TaskCall, ...]:
    """Tell each call whose failure stops the batch which temporary inputs then go unused.

    A failed sequence step ends the sequence, and a failed mapped call means
    the reducer never runs: the failing task drops those calls' inputs.
    """
    if mode == "parallel":
        return calls

    def temps(group: tuple[TaskCall, ...]) -> list[str]:
        return [name for call in group for name in call.payload.get("temp") or ()]

    if mode == "sequence":
        unused = [temps(calls[i + 1 :]) for i in range(len(calls))]
    else:
        unused = [temps(calls[-1:])] * (len(calls) - 1) + [[]]
    return tuple(
        replace(call, payload={**call.payload, "drop_on_failure": names}) if names else call
        for call, names in zip(calls, unused, strict=True)
    )


def _current_tracking() -> dict[str, Any] | None:
    """The active experiment's tracking context, if a ``with experiment`` block is open."""
    import sys

    module = sys.modules.get("omops.tracking.experiment")
    return module.CURRENT.get() if module is not None else None


class ModelProxy:
    """The actions of one stored model. Each returns a :class:`TaskResult`.

    ``X`` and ``Y`` are dataset references (``'stats[^sales]'``,
    ``'stats@v1[sales]'``, ``{'name': 'stats', 'sales__gte': 100}``) or
    in-memory data (DataFrame, ndarray, list), which travels through a
    temporary dataset that the task removes when done.
    """

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name

    def __repr__(self) -> str:
        return f"<ModelProxy {self.name!r} on {self.runtime!r}>"

    def _data(self, value: Any, temp: list[str]) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            return dict(value)
        name = temp_name()
        data = value
        if isinstance(value, (list, tuple)):
            import numpy as np

            data = np.asarray(value)
        self.runtime.om.datasets.put(data, name, append=False)
        temp.append(name)
        return name

    def call(
        self,
        action: str,
        X: Any = None,
        Y: Any = None,
        *,  # noqa: N803
        result_name: str | None = None,
        **kwargs: Any,
    ) -> TaskCall:
        """The task call for ``action``; in-memory X/Y are stored as temporary datasets."""
        action_spec(action)  # an unknown action fails here, not on a worker
        if result_name is not None:
            parse_reference(result_name)
        temp: list[str] = []
        payload = {
            "name": self.name,
            "action": action,
            "X": self._data(X, temp),
            "Y": self._data(Y, temp),
            "kwargs": kwargs,
            "result_name": result_name,
            "temp": temp,
        }
        tracking = _current_tracking()
        if tracking is not None:
            payload["tracking"] = tracking
        return TaskCall("omops.model", payload, self.runtime.label, self.runtime.om.bucket)

    def _call(
        self,
        action: str,
        X: Any = None,
        Y: Any = None,
        *,  # noqa: N803
        result_name: str | None = None,
        **kwargs: Any,
    ) -> TaskResult:
        return self.runtime.submit(self.call(action, X, Y, result_name=result_name, **kwargs))

    def fit(self, X: Any, Y: Any = None, **kwargs: Any) -> TaskResult:  # noqa: N803
        """Fit on X (and Y); the fitted model is stored as a new revision."""
        return self._call("fit", X, Y, **kwargs)

    def partial_fit(self, X: Any, Y: Any = None, **kwargs: Any) -> TaskResult:  # noqa: N803
        """Update the model with one batch; stored as a new revision."""
        return self._call("partial_fit", X, Y, **kwargs)

    def fit_transform(
        self,
        X: Any,
        Y: Any = None,
        *,
        rName: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> TaskResult:
        """Fit and transform; the model is stored, the result returned (or stored as rName)."""
        return self._call("fit_transform", X, Y, result_name=rName, **kwargs)

    def predict(self, X: Any = None, *, rName: str | None = None, **kwargs: Any) -> TaskResult:  # noqa: N803
        """Predictions as a list, or stored as dataset ``rName``."""
        return self._call("predict", X, result_name=rName, **kwargs)

    def predict_proba(
        self, X: Any = None, *, rName: str | None = None, **kwargs: Any
    ) -> TaskResult:  # noqa: N803
        """Class probabilities as a list of lists, or stored as dataset ``rName``."""
        return self._call("predict_proba", X, result_name=rName, **kwargs)

    def decision_function(
        self,
        X: Any = None,
        *,
        rName: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> TaskResult:
        """Decision function values, or stored as dataset ``rName``."""
        return self._call("decision_function", X, result_name=rName, **kwargs)

    def transform(self, X: Any = None, *, rName: str | None = None, **kwargs: Any) -> TaskResult:  # noqa: N803
        """Transformed data, or stored as dataset ``rName``."""
        return self._call("transform", X, result_name=rName, **kwargs)

    def score(self, X: Any, Y: Any = None, **kwargs: Any) -> TaskResult:  # noqa: N803
        """The model's score on X, Y (a float)."""
        return self._call("score", X, Y, **kwargs)

    def gridsearch(
        self,
        X: Any,
        Y: Any = None,
        *,
        parameters: Mapping[str, list[Any]],  # noqa: N803
        **kwargs: Any,
    ) -> TaskResult:
        """Grid search with cross-validation; the best estimator becomes a new revision.

        The search is stored as model ``<name>/gridsearch`` and its
        ``cv_results_`` as dataset ``<name>/gridsearch``.
        """
        return self._call("gridsearch", X, Y, parameters=dict(parameters), **kwargs)

    # -- monitoring (read where the predictions are logged: here, not as a task) --

    def drift(
        self,
        since: Any = "1d",
        reference: str | None = None,
        until: Any = None,
        *,
        experiment: str | None = None,
        alert: bool = True,
    ) -> Any:
        """Drift of this tracked model's inputs over a window of its predictions.

        Parameters
        ----------
        since : str, datetime or timedelta, default='1d'
            ``'15m'``, ``'1h'``, ``'1d'`` before ``until``, a datetime or ISO text.
        reference : str, optional
            Training inputs to compare with; the one given to ``exp.track`` by default.
        until : str or datetime, optional
            End of the window (excluded), now by default.
        experiment : str, optional
            The tracking experiment, when several track the model.
        alert : bool, default=True
            Log an ``alert`` event (and POST the configured webhook) when a
            feature drifted or the error rate is over its threshold.

        Returns
        -------
        omops.monitoring.DriftReport
            Per feature: test, statistic, p_value, psi, drifted;
            ``.to_frame()``, ``.to_dict()``.
        """
        from omops.monitoring import drift

        return drift(
            self.runtime.om,
            self.name,
            since=since,
            until=until,
            reference=reference,
            experiment=experiment,
            alert=alert,
        )


class ScriptProxy:
    """Runs of one stored script package (see :mod:`omops.runtime.scripts`).

    ``run(**kwargs)`` calls the package's ``run(om, **kwargs)`` where the
    runtime runs tasks, in a virtual environment with the package and its
    dependencies, cached per wheel on that machine.

    Examples
    --------
    >>> import omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> om.runtime.script('myscript')
    <ScriptProxy 'myscript' on <Runtime local, bucket 'default'>>
    """

    def __init__(self, runtime: Runtime, name: str) -> None:
        ref = parse_reference(name)
        if ref.columns is not None:
            raise InvalidName(f"a script reference takes no column selector: {name!r}")
        self.runtime = runtime
        self.name = name

    def __repr__(self) -> str:
        return f"<ScriptProxy {self.name!r} on {self.runtime!r}>"

    def call(self, **kwargs: Any) -> TaskCall:
        """The task call of a run; the script must exist (NotFound now, not on a worker)."""
        from omops.runtime.scripts import script_arguments, script_revision

        script_revision(self.runtime.om, self.name)
        payload: dict[str, Any] = {"name": self.name, "kwargs": script_arguments(kwargs)}
        tracking = _current_tracking()
        if tracking is not None:
            payload["tracking"] = tracking
        return TaskCall("omops.script", payload, self.runtime.label, self.runtime.om.bucket)

    def run(self, **kwargs: Any) -> TaskResult:
        """Run the script with these keyword arguments; ``.get()`` gives the run's record.

        The record has ``result`` (what ``run`` returned), ``args``,
        ``started``, ``ended``, ``duration``, ``output`` and ``env``; a script
        that raises makes ``.get()`` raise TaskFailed with its exception's
        type, message and traceback.
        """
        return self.runtime.submit(self.call(**kwargs))

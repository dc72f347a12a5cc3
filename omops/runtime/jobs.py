"""Job runs: a stored notebook, executed in a fresh Jupyter kernel wherever the runtime runs tasks.

:func:`run_job` is the one function that runs a job; the task ``omops.job``
calls it on the local executor and on Celery workers alike, and
``om.runtime.job(name)`` (:class:`JobProxy`) submits that task. A run

1. reads the notebook revision (``name`` or ``name@tag``),
2. injects its parameters in a cell tagged ``injected-parameters``, after the
   cell tagged ``parameters`` (papermill's convention) or first: each
   parameter as a variable, and all of them as the dict ``job``
   (``job['param']`` is the item of a :meth:`JobProxy.map` run),
3. runs every cell in a fresh kernel (:mod:`omops.runtime._kernels`), each
   within the cell timeout,
4. stores the executed notebook as ``results/<name>_<UTC timestamp>`` in
   ``om.jobs``, its attributes (and ``metadata.omops``) saying status,
   start, end, duration, parameters and, on failure, the failing cell's
   index, error and traceback,
5. answers that record, or raises :class:`~omops.errors.TaskFailed` naming
   the cell and the stored result when a cell failed, timed out or the
   kernel died. The process that ran it lives on.
"""

from __future__ import annotations

import datetime as dt
import keyword
import os
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from omops.errors import ConfigError, InvalidData, InvalidName, NotFound, TaskFailed
from omops.jobs import RESULTS_PREFIX, json_parameters
from omops.names import Reference, parse_reference
from omops.runtime._kernels import kernels_of
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import DoneResult, TaskResult

if TYPE_CHECKING:
    from omops.omega import Omega
    from omops.runtime.runtime import Runtime

__all__ = [
    "CELL_TIMEOUT_VARIABLE",
    "DEFAULT_CELL_TIMEOUT",
    "KIND",
    "RESULTS_PREFIX",
    "JobProxy",
    "inject_parameters",
    "job_exists",
    "job_task",
    "run_job",
]

KIND = "notebook.ipynb"
#: Seconds one cell may run when neither the run nor OMOPS_JOB_CELL_TIMEOUT says.
DEFAULT_CELL_TIMEOUT = 3600.0
CELL_TIMEOUT_VARIABLE = "OMOPS_JOB_CELL_TIMEOUT"
_INJECTED = "injected-parameters"


# -- parameters ----------------------------------------------------------------


def _literal(value: Any) -> str:
    """A JSON value as Python source (``true`` -> ``True``)."""
    return repr(value)


def inject_parameters(notebook: Any, parameters: Mapping[str, Any]) -> int:
    """Add the cell that sets ``parameters`` (and ``job``); returns its index.

    It goes right after the first cell tagged ``parameters``, else first; a
    cell tagged ``injected-parameters`` from an earlier run is replaced.
    Parameters whose names are not Python identifiers are only in ``job``.

    Examples
    --------
    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('n = 1')])
    >>> nb.cells[0].metadata['tags'] = ['parameters']
    >>> inject_parameters(nb, {'n': 5, 'my-key': True})
    1
    >>> print(nb.cells[1].source)
    # Parameters injected by omops
    job = {'n': 5, 'my-key': True}
    n = 5
    """
    import nbformat

    lines = ["# Parameters injected by omops", f"job = {_literal(dict(parameters))}"]
    lines += [
        f"{name} = {_literal(value)}"
        for name, value in parameters.items()
        if name.isidentifier() and not keyword.iskeyword(name) and name != "job"
    ]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [_INJECTED]
    notebook.cells = [c for c in notebook.cells if _INJECTED not in _tags(c)]
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in _tags(c)]
    at = tagged[0] + 1 if tagged else 0
    notebook.cells.insert(at, cell)
    return at


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags") or [])


# -- running -------------------------------------------------------------------


def cell_timeout(timeout: float | None) -> float | None:
    """The cell timeout of a run: given, else OMOPS_JOB_CELL_TIMEOUT, else 3600 s; 0 is none."""
    if timeout is None:
        text = os.environ.get(CELL_TIMEOUT_VARIABLE, "").strip()
        if not text:
            return DEFAULT_CELL_TIMEOUT
        try:
            timeout = float(text)
        except ValueError:
            raise ConfigError(
                f"{CELL_TIMEOUT_VARIABLE} must be seconds (0: no limit), not {text!r}"
            ) from None
    if not timeout >= 0:
        raise InvalidData(f"the cell timeout must be seconds >= 0 (0: no limit), got {timeout!r}")
    return timeout or None


def kernel_environment(om: Omega) -> dict[str, str]:
    """The kernel's environment: this one, pointed at ``om``'s catalog, blobs, broker and bucket.

    So ``import omops as om`` in the notebook works on the job's own store
    and bucket, and what this process imports, the kernel can.
    """
    env = dict(os.environ)
    env.update(
        OMOPS_CATALOG=om.catalog.url,
        OMOPS_BLOBS=om.blobs.url,
        OMOPS_BUCKET=om.bucket,
        PYTHONPATH=os.pathsep.join(dict.fromkeys(os.path.abspath(p) for p in sys.path if p)),
        JUPYTER_PLATFORM_DIRS="1",  # jupyter_core's paths without its migration warning
    )
    if om.broker:
        env["OMOPS_BROKER"] = om.broker
    else:
        env.pop("OMOPS_BROKER", None)
    return env


def _reference(name: str) -> Reference:
    ref = parse_reference(name)
    if ref.columns is not None:
        raise InvalidName(f"a job reference takes no column selector: {name!r}")
    return ref


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _result_name(om: Omega, job: str, started: dt.datetime) -> str:
    stamp = started.strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{RESULTS_PREFIX}{job}_{stamp}"
    if om.jobs.exists(name):  # two runs in the same microsecond (map on many workers)
        name = f"{name}-{uuid.uuid4().hex[:6]}"
    return name


def _kernel_name(notebook: Any) -> str:
    spec = notebook.metadata.get("kernelspec") or {}
    return spec.get("name") or "python3"


def _language(notebook: Any) -> str:
    info = notebook.metadata.get("language_info") or {}
    spec = notebook.metadata.get("kernelspec") or {}
    return str(info.get("name") or spec.get("language") or "python").lower()


def run_job(
    om: Omega,
    name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    scheduled: str | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """Run the stored notebook ``name`` with ``parameters``; see the module docstring.

    Parameters
    ----------
    om : Omega
        Where the job is, and where its result goes.
    name : str
        The job, ``name`` or ``name@tag``.
    parameters : dict, optional
        JSON values, injected as variables and as the dict ``job``.
    timeout : float, optional
        Seconds each cell may run (0: no limit); by default
        ``OMOPS_JOB_CELL_TIMEOUT`` or 3600.
    scheduled : str, optional
        The schedule occurrence that fired this run (recorded).
    task_id : str, optional
        The task id (recorded).

    Returns
    -------
    dict
        ``{job, revision, result, status, started, ended, duration,
        parameters, kernel}`` where ``result`` names the executed notebook.

    Raises
    ------
    TaskFailed
        A cell raised, timed out or the kernel died; its type is the cell's
        error type (``DeadKernelError``, ``CellTimeoutError`` for the other two).
    """
    ref = _reference(name)
    revision = om.catalog.lookup(om.bucket, "jobs", ref.name, ref.ref)
    if revision.kind != KIND:
        raise InvalidData(
            f"job {ref.name!r} is a {revision.kind}, not a notebook; store one with "
            "om.jobs.put('analysis.ipynb', name) or om.jobs.create(code, name)"
        )
    parameters = json_parameters(parameters)
    limit = cell_timeout(timeout)
    notebook = om.jobs.get(f"{ref.name}@{revision.revision}")
    if _language(notebook) != "python" and parameters:
        raise InvalidData(
            f"job {ref.name!r} is a {_language(notebook)} notebook; omops injects parameters "
            "into Python notebooks only"
        )
    inject_parameters(notebook, parameters)
    kernels, env = kernels_of(om), kernel_environment(om)
    started, clock = _now(), time.perf_counter()
    kernel = _kernel_name(notebook)
    try:
        executed = kernels.run(notebook, kernel_name=kernel, env=env, timeout=limit)
    except InvalidData:
        if kernel == "python3" or _language(notebook) != "python":
            raise
        kernel = "python3"  # a Python notebook made with a kernel this machine lacks
        executed = kernels.run(notebook, kernel_name=kernel, env=env, timeout=limit)
    record: dict[str, Any] = {
        "job": ref.name,
        "revision": revision.revision,
        "status": "failed" if executed.error else "ok",
        "started": started.isoformat(),
        "ended": _now().isoformat(),
        "duration": round(time.perf_counter() - clock, 3),
        "parameters": parameters,
        "kernel": kernel,
        "pooled_kernel": executed.pooled,
    }
    if scheduled:
        record["scheduled"] = scheduled
    if task_id:
        record["task"] = task_id
    if executed.error:
        record["error"] = executed.error
    record["result"] = _result_name(om, ref.name, started)
    notebook.metadata["omops"] = record
    om.jobs.put(notebook, record["result"], attributes=record, kind=KIND)
    if executed.error:
        raise _failure(record)
    return record


def _failure(record: Mapping[str, Any]) -> TaskFailed:
    error = record["error"]
    where = f"cell {error['cell']}" if error.get("cell") is not None else "its kernel"
    message = (
        f"job {record['job']!r} failed in {where}: {error['ename']}: {error['evalue']}; "
        f"the executed notebook is {record['result']!r} (om.jobs.get({record['result']!r}))"
    )
    return TaskFailed(error["ename"], message, error.get("traceback") or "")


def job_task(om: Omega, payload: Mapping[str, Any], previous: Any = None) -> Any:
    """The task ``omops.job``: :func:`run_job` with the payload's name and ``kwargs``."""
    return run_job(
        om,
        payload["name"],
        payload.get("kwargs"),
        timeout=payload.get("timeout"),
        scheduled=payload.get("scheduled"),
        task_id=payload.get("record"),
    )


# -- om.runtime.job(...) -------------------------------------------------------


class JobProxy:
    """Runs of one stored notebook: ``om.runtime.job(name)``.

    Parameters
    ----------
    runtime : Runtime
        Where the runs go (local, or the Celery queue of its label).
    name : str
        The job, ``name`` or ``name@tag``.
    timeout : float, optional
        Seconds each cell may run (0: no limit); by default the worker's
        ``OMOPS_JOB_CELL_TIMEOUT`` or 3600.
    """

    def __init__(self, runtime: Runtime, name: str, *, timeout: float | None = None) -> None:
        _reference(name)
        if timeout is not None:
            cell_timeout(timeout)
        self.runtime = runtime
        self.name = name
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<JobProxy {self.name!r} on {self.runtime!r}>"

    def call(self, parameters: Mapping[str, Any] | None = None) -> TaskCall:
        """The task call of one run with ``parameters``."""
        from omops.runtime.runtime import _current_tracking

        payload: dict[str, Any] = {"name": self.name, "kwargs": json_parameters(parameters)}
        if self.timeout is not None:
            payload["timeout"] = self.timeout
        tracking = _current_tracking()
        if tracking is not None:
            payload["tracking"] = tracking
        return TaskCall("omops.job", payload, self.runtime.label, self.runtime.om.bucket)

    def run(self, parameters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> TaskResult:
        """Run the notebook once; ``.get()`` answers the run's record (see :func:`run_job`).

        Parameters are given as keywords (``run(region='eu')``) or as a dict.
        Inside ``with om.runtime.parallel() as crt`` the run is collected instead.
        """
        return self.runtime.submit(self.call({**(parameters or {}), **kwargs}))

    def map(self, items: Iterable[Any], /, **parameters: Any) -> TaskResult:
        """Run the notebook once per item, in parallel; ``.get()`` answers the records in order.

        In each run ``job['param']`` (and the variable ``param``) is the item;
        ``parameters`` are given to every run.
        """
        calls = [self.call({**parameters, "param": item}) for item in items]
        batch = self.runtime._batch
        if batch is not None:  # inside parallel(): the runs join the collected calls
            batch.extend(calls)
            return None  # type: ignore[return-value]
        if not calls:
            return DoneResult([])
        return self.runtime.executor.submit(Batch("parallel", tuple(calls)))

    def submit(self, parameters: Mapping[str, Any] | None = None, /, **kwargs: Any) -> str:
        """Start one run without waiting; returns the task id.

        Its outcome is written to the catalog's task log, so
        ``om.catalog.task_log.get(id)`` and ``GET /api/v1/task/{id}/result``
        answer from any process.
        """
        om = self.runtime.om
        job_exists(om, self.name)  # NotFound now, not in the task
        call = self.call({**(parameters or {}), **kwargs})
        task_id = uuid.uuid4().hex
        om.catalog.task_log.submitted(task_id, bucket=om.bucket, task=call.task)
        recorded = TaskCall(call.task, {**call.payload, "record": task_id}, call.queue, call.bucket)
        self.runtime.executor.submit(recorded, task_id=task_id, background=True)
        return task_id


def job_exists(om: Omega, name: str) -> None:
    """NotFound unless ``name`` is a stored job."""
    ref = _reference(name)
    try:
        om.catalog.lookup(om.bucket, "jobs", ref.name, ref.ref)
    except NotFound:
        raise NotFound(
            f"job {ref.name!r} does not exist in bucket {om.bucket!r}; store one with "
            "om.jobs.put('analysis.ipynb', name) and list them with om.jobs.list()"
        ) from None

"""``om.jobs``: the repository of notebooks, with what only notebooks have.

Besides every store's verbs, :class:`JobsRepository` makes notebooks from
code (:meth:`~JobsRepository.create`), schedules their runs
(:meth:`~JobsRepository.schedule`), lists the results of past runs
(:meth:`~JobsRepository.results`) and exports notebooks to HTML, Python or
ipynb (:meth:`~JobsRepository.export`). Runs themselves belong to the
runtime: ``om.runtime.job(name).run(...)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from omops._cron import next_after, to_cron
from omops.errors import InvalidData, NotFound, PluginError
from omops.names import check_name, check_tag, parse_reference
from omops.plugins.notebook import nbformat
from omops.repository import Metadata, Repository

__all__ = ["EXPORT_FORMATS", "RESULTS_PREFIX", "JobsRepository", "json_parameters"]

RESULTS_PREFIX = "results/"
EXPORT_FORMATS = ("html", "ipynb", "py")
_KIND = "notebook.ipynb"
_CELL_MARK = "# %%"


def _cells(code: str | Sequence[str]) -> list[str]:
    """Cell sources: a list as given, or text split at lines starting with ``# %%``."""
    if isinstance(code, str):
        cells: list[list[str]] = [[]]
        for line in code.splitlines():
            if line.startswith(_CELL_MARK):
                cells.append([])
            else:
                cells[-1].append(line)
        found = ["\n".join(lines).strip("\n") for lines in cells]
        return [c for c in found if c.strip()] or [""]
    if not all(isinstance(c, str) for c in code):
        raise InvalidData("create(code=...) takes text, or a list of texts (one per cell)")
    return list(code)


def json_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """``parameters`` as plain JSON values (NumPy numbers become Python numbers).

    Raises
    ------
    InvalidData
        Not a mapping with string keys, or a value that is not JSON-able.
    """
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise InvalidData(
            f"job parameters are a dict of names to JSON values, got {type(parameters).__name__}"
        )
    bad = [k for k in parameters if not isinstance(k, str) or not k]
    if bad:
        raise InvalidData(f"job parameter names must be non-empty strings, got {bad[:3]!r}")
    try:
        text = orjson.dumps(dict(parameters), option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise InvalidData(
            f"job parameters must be JSON values (numbers, text, lists, dicts): {exc}; store "
            "larger objects with om.datasets.put and pass their name"
        ) from None
    return orjson.loads(text)


class JobsRepository(Repository):
    """``om.jobs``: notebooks (kind ``notebook.ipynb``), their schedules and results.

    Examples
    --------
    >>> import omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> om.jobs.create("print('hello')", 'hello').kind
    'notebook.ipynb'
    >>> om.jobs.get('hello').cells[0].source
    "print('hello')"
    """

    def create(
        self,
        code: str | Sequence[str],
        name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Metadata:
        """Store a Python notebook made from ``code`` as job ``name``.

        Parameters
        ----------
        code : str or list of str
            The cells: text (split into cells at lines starting with ``# %%``)
            or one text per cell.
        name : str
        parameters : dict, optional
            Defaults for a first cell tagged ``parameters`` (``n = 1``); a run's
            parameters are set after it.
        attributes : dict, optional
            User attributes.
        """
        check_name(name)
        nbf = nbformat()
        cells = [nbf.v4.new_code_cell(source) for source in _cells(code)]
        if parameters:
            values = json_parameters(parameters)
            source = "\n".join(f"{k} = {v!r}" for k, v in values.items() if k.isidentifier())
            cell = nbf.v4.new_code_cell(source)
            cell.metadata["tags"] = ["parameters"]
            cells.insert(0, cell)
        notebook = nbf.v4.new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        return self.put(notebook, name, attributes, kind=_KIND)

    # -- results --------------------------------------------------------------

    def results(self, name: str) -> list[dict[str, Any]]:
        """Records of the stored runs of job ``name``, oldest first.

        Each is the run's record (``status``, ``started``, ``ended``,
        ``duration``, ``parameters``, ``error`` on failure) with ``result``,
        the name of its executed notebook.
        """
        job = check_name(parse_reference(name).name)
        found = []
        records = self.catalog.list(
            self.bucket, self.store, pattern=f"{RESULTS_PREFIX}{job}_*", kind=_KIND
        )
        for record in records:
            attributes = dict(record.attributes)
            if attributes.get("job") == job:
                found.append({**attributes, "result": record.name})
        return sorted(found, key=lambda r: (str(r.get("started")), r["result"]))

    # -- schedules ------------------------------------------------------------

    def schedule(
        self,
        name: str,
        run_at: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Run job ``name`` at ``run_at`` (UTC), from now on, replacing any earlier schedule.

        Runs are fired by ``om runtime scheduler`` (one or more processes on
        this catalog; each occurrence fires once) and go to the runtime of
        the scheduler's configuration: a Celery queue ``label`` when it has a
        broker, else they run in the scheduler process.

        Parameters
        ----------
        name : str
            A stored job.
        run_at : str
            A cron line (``'0 6 * * MON-FRI'``) or text: ``'every 5 minutes'``,
            ``'every 2 hours'``, ``'hourly'``, ``'daily at 06:00'``,
            ``'weekdays at 06:00'``, ``'mondays at 08:30'``.
        parameters : dict, optional
            Parameters of every run.
        label : str, optional
            The queue runs are sent to; by default the scheduler's own
            (``OMOPS_LABEL``, else ``default``).

        Returns
        -------
        dict
            The schedule: ``run_at``, ``cron``, ``next_run`` ...

        Examples
        --------
        >>> import omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.jobs.create('x = 1', 'nightly')
        >>> om.jobs.schedule('nightly', 'weekdays at 06:00')['cron']
        '0 6 * * MON-FRI'
        """
        job = self._job(name)
        cron = to_cron(run_at)
        record = self.catalog.schedules.set(
            self.bucket,
            job,
            run_at=" ".join(run_at.split()),
            cron=cron,
            parameters=json_parameters(parameters),
            queue="" if label is None else check_tag(label),
            next_run=next_after(cron, dt.datetime.now(dt.UTC)),
        )
        return record.to_dict()

    def get_schedule(self, name: str) -> dict[str, Any]:
        """The schedule of job ``name``; NotFound when it has none."""
        return self.catalog.schedules.get(self.bucket, check_name(name)).to_dict()

    def drop_schedule(self, name: str, *, force: bool = False) -> bool:
        """Stop scheduling job ``name``; NotFound when it had no schedule (False with ``force``)."""
        dropped = self.catalog.schedules.drop(self.bucket, check_name(name))
        if not dropped and not force:
            self.catalog.schedules.get(self.bucket, name)  # raises NotFound
        return dropped

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule in this bucket."""
        return [s.to_dict() for s in self.catalog.schedules.list(self.bucket)]

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Delete job ``name`` with all its revisions, and its schedule if it has one."""
        dropped = super().drop(name, force=force)
        if dropped:
            self.catalog.schedules.drop(self.bucket, name)
        return dropped

    # -- export ---------------------------------------------------------------

    def export(self, name: str, format: Literal["html", "ipynb", "py"] = "html") -> str:  # noqa: A002
        """Job or result ``name`` (``name@tag`` for a revision) as HTML, notebook JSON or Python.

        Examples
        --------
        >>> import omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.jobs.create("print('hi')", 'hi')
        >>> "print('hi')" in om.jobs.export('hi', format='py')
        True
        """
        if format not in EXPORT_FORMATS:
            raise InvalidData(f"export format {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
        meta = self.metadata(name)
        if meta.kind != _KIND:
            raise InvalidData(f"{name!r} is a {meta.kind}, not a notebook; only notebooks export")
        notebook = self.get(name)
        if format == "ipynb":
            return str(nbformat().writes(notebook))
        try:
            from nbconvert import HTMLExporter, PythonExporter
        except ImportError:
            raise PluginError("exporting needs nbconvert: pip install 'omops[jobs]'") from None
        exporter = HTMLExporter() if format == "html" else PythonExporter()
        body, _resources = exporter.from_notebook_node(notebook)
        return str(body)

    # -- helpers --------------------------------------------------------------

    def _job(self, name: str) -> str:
        """The name of a stored notebook; NotFound or InvalidData otherwise."""
        job = check_name(name)
        record = self.catalog.find(self.bucket, self.store, job)
        if record is None:
            raise NotFound(
                f"job {job!r} does not exist in bucket {self.bucket!r}; store one with "
                "om.jobs.put('analysis.ipynb', name) and list them with om.jobs.list()"
            )
        if record.kind != _KIND:
            raise InvalidData(f"{job!r} is a {record.kind}, not a notebook")
        return job

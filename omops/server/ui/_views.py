"""What each dashboard page shows, read from one bucket's Omega: plain dicts for the templates.

Every listing reads one page (:data:`PAGE_SIZE` rows) through an index,
whatever the store holds; every series is bounded (:data:`MAX_POINTS`). No
function here writes anything.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from omops.errors import InvalidQuery, NotFound, PluginError
from omops.jobs import RESULTS_PREFIX
from omops.names import check_name, parse_reference
from omops.omega import Omega
from omops.repository import STORES
from omops.server._payload import coerce_filters

__all__ = [
    "MAX_POINTS",
    "PAGE_SIZE",
    "PREVIEW_ROWS",
    "RESULTS_PREFIX",
    "Paging",
    "dataset_frame",
    "dataset_view",
    "experiment_view",
    "experiments_view",
    "home_view",
    "job_view",
    "listing_view",
    "model_view",
    "notebook_html",
    "parse_where",
    "production_view",
    "script_view",
    "tasks_view",
]

#: Rows of a listing page.
PAGE_SIZE = 50
#: Rows of a dataset preview.
PREVIEW_ROWS = 100
#: Points plotted on a page, about (metrics of the runs shown, profiling samples).
MAX_POINTS = 5_000
#: Event rows of a run's event page.
EVENT_PAGE = 100
#: Kinds whose whole value a dataset page shows (small, stored here); others are not read.
_SHOWN_WHOLE = frozenset({"python.json", "numpy.ndarray"})
#: Script runs looked through for one script's page (the newest).
SCRIPT_RUNS_SCANNED = 500
_TERM = re.compile(r"\s*([A-Za-z0-9_.\-]+(?:__[a-z]+)?)\s*=\s*([^&;]*?)\s*(?:[&;]|$)")


class Paging:
    """Page ``number`` (1-based) of ``total`` items, :data:`PAGE_SIZE` a page."""

    def __init__(self, number: int, total: int, size: int = PAGE_SIZE) -> None:
        self.size = size
        self.total = total
        self.pages = max((total + size - 1) // size, 1)
        self.number = min(max(number, 1), self.pages)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @staticmethod
    def offset_of(number: int, size: int = PAGE_SIZE) -> int:
        return (max(number, 1) - 1) * size


def _iso(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def home_view(om: Omega, visible: Sequence[str] | None) -> dict[str, Any]:
    """Buckets (those a key may read, when ``visible`` is given) with objects per store."""
    counts = om.catalog.buckets()
    names = sorted(set(counts) | {om.bucket}) if visible is None else sorted(visible)
    buckets = [{"name": b, "counts": [counts.get(b, {}).get(s, 0) for s in STORES]} for b in names]
    return {"buckets": buckets, "stores": STORES}


def listing_view(
    om: Omega, store: str, *, page: int, prefix: str | None, exclude: str | None = None
) -> dict[str, Any]:
    """One page of a store's objects with kind, rows, size and modified time."""
    offset = Paging.offset_of(page)
    records, total = om.catalog.page(
        om.bucket, store, prefix=prefix or None, exclude=exclude, offset=offset, limit=PAGE_SIZE
    )
    paging = Paging(page, total)
    latest = om.catalog.latest_revisions([r.id for r in records])
    items = []
    for record in records:
        revision = latest.get(record.id)
        items.append(
            {
                "name": record.name,
                "kind": record.kind,
                "modified": _iso(record.modified),
                "rows": revision.rows if revision else None,
                "size": revision.size if revision else None,
            }
        )
    return {"items": items, "paging": paging, "prefix": prefix or ""}


def _revisions(om: Omega, store: str, name: str) -> list[dict[str, Any]]:
    record = om.catalog.get(om.bucket, store, check_name(parse_reference(name).name))
    found = [
        {
            "revision": rev.revision,
            "short": rev.revision[:12],
            "tags": sorted(tags),
            "created": _iso(rev.created),
            "rows": rev.rows,
            "size": rev.size,
        }
        for rev, tags in om.catalog.revisions(record.id)
    ]
    return found[::-1]  # newest first


def parse_where(text: str) -> dict[str, str]:
    """Filters typed in the dashboard, ``sales__gte=100 & region=EU``, as query-string pairs."""
    text = text.strip()
    if not text:
        return {}
    terms: dict[str, str] = {}
    position = 0
    for match in _TERM.finditer(text):
        if match.start() != position:
            break
        terms[match[1]] = match[2]
        position = match.end()
    if position != len(text) or not terms:
        raise InvalidQuery(
            f"cannot read the filter {text!r}; write col=value or col__op=value terms joined "
            "by &, like 'sales__gte=100 & region__in=EU,US' (ops: eq ne lt lte gt gte in nin "
            "between contains startswith endswith isnull notnull)"
        )
    return terms


def _read_arguments(
    om: Omega, name: str, where: str, columns: str
) -> tuple[Any, dict[str, Any], list[str] | None]:
    """The dataset's metadata, the typed filter as values of its columns' types, the columns."""
    meta = om.datasets.metadata(name)
    if meta.kind not in ("pandas.dataframe", "pandas.series"):
        raise InvalidQuery(f"filters apply to DataFrames; {name!r} is {meta.kind}")
    filters = coerce_filters(parse_where(where), dict(meta.details.get("dtypes", {})))
    wanted = [c.strip() for c in columns.split(",") if c.strip()] or None
    return meta, filters, wanted


def dataset_frame(om: Omega, name: str, where: str, columns: str) -> Any:
    """The dataset's rows that match the typed filter, in the typed columns."""
    meta, filters, wanted = _read_arguments(om, name, where, columns)
    frame = om.datasets.get(name, columns=wanted, **filters)
    return frame.to_frame() if meta.kind == "pandas.series" else frame


def _preview(om: Omega, name: str, where: str, columns: str) -> tuple[Any, int]:
    """The first :data:`PREVIEW_ROWS` matching rows, and how many match: only those are read."""
    import pyarrow as pa

    _, filters, wanted = _read_arguments(om, name, where, columns)
    matching = om.datasets.stream(name, columns=wanted, filters=filters)
    try:
        total = matching.count()
    finally:
        matching.close()
    head = om.datasets.stream(name, columns=wanted, filters=filters, limit=PREVIEW_ROWS)
    try:
        table = pa.Table.from_batches(list(head.batches), schema=head.schema)
    finally:
        head.close()
    return table.select(head.data_columns).to_pandas(), total


def dataset_view(om: Omega, name: str, *, where: str, columns: str) -> dict[str, Any]:
    """Schema, size, revisions, and a preview of the rows matching ``where``."""
    meta = om.datasets.metadata(name)
    view: dict[str, Any] = {
        "meta": meta,
        "revisions": _revisions(om, "datasets", name),
        "dtypes": dict(meta.details.get("dtypes", {})),
        "where": where,
        "columns": columns,
        "frame": meta.kind in ("pandas.dataframe", "pandas.series"),
    }
    if view["frame"]:
        try:
            head, view["matched"] = _preview(om, name, where, columns)
        except InvalidQuery as exc:
            view["error"] = str(exc)
            return view
        view["header"] = [str(c) for c in head.columns]
        view["rows"] = [[_cell(v) for v in row] for row in head.itertuples(index=False)]
    elif meta.kind in _SHOWN_WHOLE:
        text = orjson.dumps(
            om.datasets.get(name),
            default=str,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
        )
        view["text"] = text[:20_000].decode(errors="replace")
    else:  # a query or a download elsewhere (sql.connection, url.dataset ...): not on a page view
        view["text"] = (
            f"No preview of a {meta.kind}: reading it runs elsewhere. Use om.datasets.get."
        )
    return view


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def model_view(om: Omega, name: str) -> dict[str, Any]:
    """Kind, revisions and tags, metadata, input columns and where the model is tracked."""
    meta = om.models.metadata(name)
    model = parse_reference(name).name
    columns = meta.kind_meta.get("feature_names")
    n_features = meta.kind_meta.get("n_features")
    if not columns and isinstance(n_features, int) and 0 < n_features <= 200:
        columns = [str(i) for i in range(n_features)]
    summary = {
        k: v for k, v in meta.kind_meta.items() if isinstance(v, (str, int, float, bool, list))
    }
    return {
        "meta": meta,
        "revisions": _revisions(om, "models", name),
        "inputs": list(columns or []),
        "named": bool(meta.kind_meta.get("feature_names")),
        "kind_meta": {k: _cell(v) for k, v in sorted(summary.items())},
        "tracked": [n for _, n in om.catalog.tracking.trackers(om.bucket, model)],
        "actions": _prediction_actions(om, meta.kind),
    }


def _prediction_actions(om: Omega, kind: str) -> list[str]:
    """The model's actions that answer with a result at once (predict first)."""
    from omops.runtime.actions import ACTIONS

    try:
        offered = om.plugins.get(kind).actions
    except PluginError:
        return ["predict"]
    found = [name for name, spec in ACTIONS.items() if spec.prediction and name in offered]
    return sorted(found, key=lambda name: (name != "predict", name))


def experiments_view(om: Omega) -> dict[str, Any]:
    return {"experiments": om.catalog.tracking.list(om.bucket, with_events=False)}


def _decoded(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _stamp(seconds: float) -> str:
    return _iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _series(rows: Sequence[tuple[Any, ...]]) -> dict[str, dict[int, dict[str, list[Any]]]]:
    """Metric rows ``(id, run, step, dt, event, key, value, ...)`` as key -> run -> x, y."""
    series: dict[str, dict[int, dict[str, list[Any]]]] = {}
    for _id, run, step, when, _event, key, value, *_ in rows:
        number = _decoded(value)
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            continue
        line = series.setdefault(key or "", {}).setdefault(run, {"x": [], "y": [], "steps": True})
        line["steps"] = line["steps"] and step is not None
        line["x"].append(step if step is not None else when)
        line["y"].append(number)
    return series


def _params(om: Omega, experiment_id: int, runs: Sequence[int]) -> dict[int, dict[str, Any]]:
    rows = om.catalog.tracking.page(experiment_id, runs_=runs, event="param", limit=MAX_POINTS)
    found: dict[int, dict[str, Any]] = {run: {} for run in runs}
    for _id, run, _step, _when, _event, key, value, *_ in rows:
        found.setdefault(run, {})[key or ""] = _decoded(value)
    return found


def _status(om: Omega, experiment_id: int, runs: Sequence[int]) -> dict[int, str]:
    rows = om.catalog.tracking.page(experiment_id, runs_=runs, event="stop", limit=len(runs) * 4)
    found = {}
    for _id, run, _step, _when, _event, _key, value, *_ in rows:
        decoded = _decoded(value)
        found[run] = decoded.get("status", "") if isinstance(decoded, dict) else ""
    return found


def _experiment_id(om: Omega, name: str) -> int:
    return om.catalog.tracking.experiment(om.bucket, check_name(name), create=False).id


def experiment_view(om: Omega, name: str, *, page: int, compare: Sequence[int]) -> dict[str, Any]:
    """A page of runs (newest first) with params and status; metric series of compared runs."""
    from omops.runtime._tracking import flush_events

    flush_events(om)
    experiment_id = _experiment_id(om, name)
    tracking = om.catalog.tracking
    runs, total = tracking.run_page(experiment_id, offset=Paging.offset_of(page), limit=PAGE_SIZE)
    numbers = [r["run"] for r in runs]
    params = _params(om, experiment_id, numbers)
    status = _status(om, experiment_id, numbers)
    table = [
        {
            "run": r["run"],
            "provider": r["provider"],
            "started": _iso(r["started"]),
            "duration": _seconds(r["started"], r["stopped"]),
            "status": status.get(r["run"], "" if r["stopped"] else "running"),
            "params": params.get(r["run"], {}),
        }
        for r in runs
    ]
    shown = sorted(set(compare)) or numbers[:1]
    per_run = MAX_POINTS // max(len(shown), 1)
    samples = [tracking.sample(experiment_id, run, event="metric", limit=per_run) for run in shown]
    series = _series([row for rows, _ in samples for row in rows])
    compared_params = _params(om, experiment_id, shown) if len(shown) > 1 else {}
    keys = sorted({k for p in compared_params.values() for k in p})
    finals = {
        key: {run: line["y"][-1] for run, line in lines.items()} for key, lines in series.items()
    }
    return {
        "name": name,
        "runs": table,
        "paging": Paging(page, total),
        "shown": shown,
        "compare": len(shown) > 1,
        "series": series,
        "thinned": any(thinned for _, thinned in samples),
        "param_keys": keys,
        "compared_params": compared_params,
        "finals": finals,
    }


def run_view(om: Omega, name: str, run: int, *, after: int | None) -> dict[str, Any]:
    """One run: a page of its events, its artifacts, system info and profiling samples."""
    from omops.runtime._tracking import flush_events

    flush_events(om)
    experiment_id = _experiment_id(om, name)
    tracking = om.catalog.tracking
    rows = tracking.page(experiment_id, runs_=[run], after=after, limit=EVENT_PAGE)
    events = [
        {
            "id": row[0],
            "step": row[2],
            "dt": _stamp(row[3]),
            "event": row[4],
            "key": row[5] or "",
            "value": _cell(row[6] or ""),
        }
        for row in rows
    ]
    artifacts = [
        _decoded(row[6])
        for row in tracking.page(experiment_id, runs_=[run], event="artifact", limit=1000)
    ]
    system, _ = tracking.sample(experiment_id, run, event="system", limit=MAX_POINTS)
    info = next((_decoded(r[6]) for r in system if r[5] == "system"), None)
    samples = [(r[3], _decoded(r[6])) for r in system if r[5] == "profile"]
    profile: dict[str, dict[str, list[Any]]] = {}
    for when, sample in samples:
        for key, value in (sample or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "pid":
                line = profile.setdefault(key, {"x": [], "y": []})
                line["x"].append(when)
                line["y"].append(value)
    return {
        "name": name,
        "run": run,
        "events": events,
        "next": rows[-1][0] if len(rows) == EVENT_PAGE else None,
        "artifacts": [a for a in artifacts if isinstance(a, dict)],
        "info": info if isinstance(info, dict) else {},
        "profile": profile,
    }


def production_view(om: Omega) -> dict[str, Any]:
    """Tracked models of the bucket, with the experiments that track each."""
    models: dict[str, list[str]] = {}
    for model, experiment in om.catalog.tracking.tracked(om.bucket):
        models.setdefault(model, []).append(experiment)
    return {"models": [{"name": m, "experiments": e} for m, e in models.items()]}


def job_view(om: Omega, name: str, *, page: int) -> dict[str, Any]:
    """A job's revisions, schedule, and a page of its runs (newest first)."""
    meta = om.jobs.metadata(name)
    job = parse_reference(name).name
    records, total = om.catalog.page(
        om.bucket,
        "jobs",
        prefix=f"{RESULTS_PREFIX}{job}_",
        offset=Paging.offset_of(page),
        limit=PAGE_SIZE,
        descending=True,
    )
    runs = []
    for record in records:
        attributes = dict(record.attributes)
        if attributes.get("job") != job:
            continue
        runs.append(
            {
                "result": record.name,
                "status": attributes.get("status", ""),
                "started": str(attributes.get("started", ""))[:19].replace("T", " "),
                "duration": attributes.get("duration"),
                "parameters": attributes.get("parameters") or {},
                "error": attributes.get("error"),
            }
        )
    schedule = om.catalog.schedules.find(om.bucket, job)
    return {
        "meta": meta,
        "revisions": _revisions(om, "jobs", name),
        "runs": runs,
        "paging": Paging(page, total),
        "schedule": schedule,
    }


def schedules_view(om: Omega) -> list[Any]:
    return om.catalog.schedules.list(om.bucket)


def notebook_html(om: Omega, name: str) -> str:
    """A stored notebook as HTML cells, without scripts (the page shows it sandboxed)."""
    meta = om.jobs.metadata(name)
    if meta.kind != "notebook.ipynb":
        raise NotFound(f"{name!r} is a {meta.kind}, not a notebook")
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        raise PluginError("showing notebooks needs nbconvert: pip install 'omops[jobs]'") from None
    body, _resources = HTMLExporter(template_name="basic").from_notebook_node(om.jobs.get(name))
    return str(body)


def script_view(om: Omega, name: str) -> dict[str, Any]:
    """A script's package, revisions, and its recent runs from the task log."""
    meta = om.scripts.metadata(name)
    script = parse_reference(name).name
    records, _ = om.catalog.task_log.recent(
        om.bucket, task="omops.script", limit=SCRIPT_RUNS_SCANNED
    )
    runs = [_task_row(r) for r in records if _script_of(r) == script]
    return {"meta": meta, "revisions": _revisions(om, "scripts", name), "runs": runs}


def _script_of(record: Any) -> str | None:
    result = record.result
    if isinstance(result, Mapping) and "script" in result:
        return str(result["script"])
    return None


def _task_row(record: Any) -> dict[str, Any]:
    error = record.error or {}
    return {
        "id": record.id,
        "task": record.task,
        "status": record.status,
        "created": _iso(record.created),
        "duration": _seconds(record.created, record.finished),
        "error": f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
        "script": _script_of(record),
    }


def tasks_view(om: Omega, *, page: int, status: str, task: str) -> dict[str, Any]:
    """A page of the newest tasks, optionally of one status or task name."""
    records, total = om.catalog.task_log.recent(
        om.bucket,
        status=status or None,
        task=task or None,
        offset=Paging.offset_of(page),
        limit=PAGE_SIZE,
    )
    return {
        "tasks": [_task_row(r) for r in records],
        "paging": Paging(page, total),
        "status": status,
        "task": task,
    }

"""A tracked model in production over time: predictions, errors, latency, drift per feature.

What the dashboard's production page plots, from the same tracked
``predict`` events as :func:`omops.monitoring.drift`, bucketed in DuckDB:

* ``series``: per time bucket (``bucket``, 1 minute by default) the
  predictions, failed ones and the latency percentiles p50/p95/p99 (ms);
* ``drift_series``: per coarser bucket (``drift_bucket``, chosen from the
  window when not given) and feature, the PSI against the reference and
  whether it is over the ``psi`` threshold (with at least ``min_rows`` values).

The answer is bounded whatever the traffic: at most :data:`MAX_BUCKETS`
buckets, and the newest :data:`~omops.monitoring._events.MAX_EVENTS` events.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from omops.errors import InvalidQuery
from omops.monitoring import _stats
from omops.monitoring._config import tracker_for
from omops.monitoring._events import Predictions, predictions
from omops.monitoring._window import Window, parse_duration, parse_window
from omops.monitoring.drift import (
    BINS,
    NUMERIC,
    _model_name,
    categorical_counts,
    kind_of,
    numeric_reference,
    reference_of,
)

if TYPE_CHECKING:
    import pandas as pd

    from omops.omega import Omega

__all__ = ["MAX_BUCKETS", "MonitorSeries", "monitor"]

#: Time buckets in one answer at most (a day of minutes).
MAX_BUCKETS = 1440
#: Widths a drift bucket is chosen from (seconds): 1m, 5m, 15m, 1h, 6h, 1d, 1w.
_DRIFT_WIDTHS = (60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 604800.0)
#: Drift buckets aimed at when none is given: no fewer values per bucket than this allows.
_DRIFT_POINTS = 24


@dataclass(frozen=True)
class MonitorSeries:
    """What :func:`monitor` answers; :meth:`to_dict` is the REST body."""

    model: str
    experiment: str
    since: str
    until: str
    bucket: float
    drift_bucket: float
    predictions: int
    errors: int
    series: list[dict[str, Any]]
    drift_series: list[dict[str, Any]]
    reference: dict[str, Any] | None = None
    truncated: bool = False
    message: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _origin(window: Window, width: float) -> float:
    """Where the first bucket starts: ``since`` rounded down to a multiple of the width."""
    return math.floor(window.since / width) * width


def _buckets(window: Window, width: float, what: str) -> int:
    """Buckets of ``width`` from the window's origin to its end (at most MAX_BUCKETS)."""
    count = math.ceil((window.until - _origin(window, width)) / width)
    if count > MAX_BUCKETS:
        raise InvalidQuery(
            f"a window of {window.seconds:g} s in {what}s of {width:g} s makes {count} buckets, "
            f"more than {MAX_BUCKETS}; give a larger {what} or a shorter window"
        )
    return count


def _drift_width(window: Window, bucket: float, given: Any) -> float:
    if given is not None:
        return parse_duration(given, what="drift_bucket")
    wanted = max(bucket, window.seconds / _DRIFT_POINTS)
    return next((w for w in _DRIFT_WIDTHS if w >= wanted), _DRIFT_WIDTHS[-1])


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def _health_series(logged: Predictions, width: float, count: int) -> list[dict[str, Any]]:
    """Predictions, errors and latency percentiles per bucket (every bucket, empty ones too)."""
    origin = _origin(logged.window, width)
    start = round(origin * 1e6)
    rows = logged.con.execute(
        """
        SELECT (dt - $start) // $width AS b, count(*) AS n,
               count(*) FILTER (WHERE status = 'error') AS e,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q
        FROM events GROUP BY b
        """,
        {"start": start, "width": round(width * 1e6)},
    ).fetchall()
    found = {int(b): (n, e, q) for b, n, e, q in rows}
    series = []
    for b in range(count):
        n, e, q = found.get(b, (0, 0, None))
        q = q or (None, None, None)
        series.append(
            {
                "t": _iso(origin + b * width),
                "predictions": int(n),
                "errors": int(e),
                "p50_ms": _number(q[0]),
                "p95_ms": _number(q[1]),
                "p99_ms": _number(q[2]),
            }
        )
    return series


def _numeric_counts(
    logged: Predictions, index: int, column: pd.Series, width: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference bin counts, and bin counts per drift bucket (rows) of one numeric feature."""
    reference = numeric_reference(column)
    edges = _stats.quantile_edges(reference, BINS)
    found = logged.con.execute(
        f"SELECT dt, f{index} AS x FROM inputs WHERE isfinite(f{index})"
    ).fetchnumpy()
    micros = np.asarray(found["dt"], dtype="int64")
    bucket = (micros - round(_origin(logged.window, width) * 1e6)) // round(width * 1e6)
    bucket = np.clip(bucket, 0, count - 1)  # a microsecond's rounding at either end
    bins = np.searchsorted(edges, np.asarray(found["x"], dtype="float64"), side="right")
    width_bins = len(edges) + 1
    flat = np.bincount(bucket * width_bins + bins, minlength=count * width_bins)
    return _stats.bin_counts(reference, edges), flat[: count * width_bins].reshape(count, -1)


def _categorical_counts(
    logged: Predictions, index: int, column: pd.Series, width: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference category counts, and counts per drift bucket (rows) of one categorical feature."""
    import pandas as pd

    expected = categorical_counts(logged.con, column)
    found = logged.con.execute(
        f"""SELECT (dt - $start) // $width AS b, f{index} AS k, count(*) AS n FROM inputs
            WHERE f{index} IS NOT NULL GROUP BY b, k""",
        {"start": round(_origin(logged.window, width) * 1e6), "width": round(width * 1e6)},
    ).df()
    table = found.pivot_table(index="b", columns="k", values="n", aggfunc="sum", fill_value=0)
    categories = expected.index.union(table.columns)
    table = table.reindex(index=range(count), columns=categories, fill_value=0)
    reference = expected.reindex(categories, fill_value=0)
    return reference.to_numpy("float64"), pd.DataFrame(table).to_numpy("float64")


def _drift_series(
    logged: Predictions,
    frame: pd.DataFrame,
    width: float,
    thresholds: dict[str, float],
) -> list[dict[str, Any]]:
    origin = _origin(logged.window, width)
    count = math.ceil((logged.window.until - origin) / width)
    kinds = {name: kind_of(frame[name]) for name in frame.columns}
    logged.load_inputs(kinds)
    points = []
    for index, (name, kind) in enumerate(kinds.items()):
        counts = _numeric_counts if kind == NUMERIC else _categorical_counts
        expected, actual = counts(logged, index, frame[name], width, count)
        rows = actual.sum(axis=1)
        if expected.sum() == 0:
            continue
        psi = _stats.psi(expected, actual)
        for b in np.flatnonzero(rows):
            value = float(psi[b])
            points.append(
                {
                    "t": _iso(origin + b * width),
                    "feature": name,
                    "psi": _number(value),
                    "rows": int(rows[b]),
                    "drifted": bool(
                        rows[b] >= thresholds["min_rows"] and value > thresholds["psi"]
                    ),
                }
            )
    points.sort(key=lambda p: p["t"])
    return points


def monitor(
    om: Omega,
    model: str,
    *,
    since: Any = "1h",
    until: Any = None,
    bucket: Any = "1m",
    drift_bucket: Any = None,
    experiment: str | None = None,
) -> MonitorSeries:
    """Predictions, errors, latency and input drift of a tracked model over time.

    Parameters
    ----------
    om : Omega
    model : str
        A model tracked by an experiment.
    since, until : optional
        The window, as in :func:`omops.monitoring.drift` (default: the last hour).
    bucket : str or float, default='1m'
        Width of the time buckets of ``series``.
    drift_bucket : str or float, optional
        Width of the buckets of ``drift_series``; by default the first of 1m,
        5m, 15m, 1h, 6h, 1d, 1w that is at least ``bucket`` and makes at most
        24 buckets.
    experiment : str, optional
        The tracking experiment, when several track the model.

    Returns
    -------
    MonitorSeries
        ``drift_series`` is empty when the model has no reference configured.
    """
    name = _model_name(model)
    window = parse_window(since, until)
    width = parse_duration(bucket, what="bucket")
    count = _buckets(window, width, "bucket")
    drift_width = _drift_width(window, width, drift_bucket)
    _buckets(window, drift_width, "drift_bucket")
    tracker = tracker_for(om, name, experiment=experiment)
    thresholds = dict(tracker.config.thresholds)
    reference = frame = None
    message = None
    if tracker.config.reference:
        frame, reference = reference_of(om, name, tracker.config.reference, tracker.config)
    else:
        message = (
            f"model {name!r} has no reference dataset, so no drift series; "
            f"track it with exp.track({name!r}, reference='<training inputs>')"
        )
    since_iso, until_iso = window.iso()
    with predictions(om, tracker.experiment_id, name, window) as logged:
        total, errors = logged.health()
        series = _health_series(logged, width, count)
        drift_series = (
            [] if frame is None else _drift_series(logged, frame, drift_width, thresholds)
        )
        truncated = logged.truncated
    return MonitorSeries(
        model=name,
        experiment=tracker.experiment,
        since=since_iso,
        until=until_iso,
        bucket=width,
        drift_bucket=drift_width,
        predictions=total,
        errors=errors,
        series=series,
        drift_series=drift_series,
        reference=reference,
        truncated=truncated,
        message=message,
        thresholds=thresholds,
    )

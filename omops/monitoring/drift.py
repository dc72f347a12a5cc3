"""Drift of a tracked model's inputs: its logged predictions against its training inputs.

For each feature, the values the model saw in a time window (its tracked
``predict`` events) are compared with the same column of a reference
dataset, the training inputs:

* numeric columns: the two-sample Kolmogorov–Smirnov test and the PSI over
  the reference's deciles;
* other columns (strings, categories, booleans): the chi-square test of the
  two samples' category counts and the PSI over the categories.

A feature is drifted when its test's p-value is below the ``p_value``
threshold AND its PSI above the ``psi`` threshold (defaults 0.05 and 0.2;
:data:`~omops.monitoring.DEFAULT_THRESHOLDS`), with at least ``min_rows``
values in the window: the p-value says the difference is not chance, the
PSI that it is large enough to matter (on a million rows every difference
is "significant"). Set ``psi`` to 0 to judge by the test alone, ``p_value``
to 1 to judge by the PSI alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from omops.errors import InvalidData, InvalidQuery
from omops.monitoring import _stats
from omops.monitoring._config import (
    MonitorConfig,
    Tracker,
    check_reference,
    tracker_for,
)
from omops.monitoring._events import Predictions, predictions
from omops.monitoring._window import Window, parse_window
from omops.names import parse_reference

if TYPE_CHECKING:
    import pandas as pd

    from omops.omega import Omega

__all__ = [
    "BINS",
    "DriftReport",
    "FeatureDrift",
    "compute_drift",
    "drift",
    "reference_columns",
    "reference_of",
]

#: PSI bins of a numeric feature: the reference's deciles.
BINS = 10
NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature.

    Attributes
    ----------
    name : str
    kind : {'numeric', 'categorical'}
    test : {'ks', 'chi2'}
        Kolmogorov–Smirnov (numeric) or chi-square (categorical).
    statistic, p_value, psi : float or None
        None when the window has no values of this feature.
    drifted : bool
    rows : int
        Values of the feature in the window (missing ones not counted).
    reference_rows : int
        Values of the feature in the reference.
    note : str or None
        Why a feature was not judged (no values, fewer than ``min_rows``).
    """

    name: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    psi: float | None
    drifted: bool
    rows: int
    reference_rows: int
    note: str | None = None


@dataclass(frozen=True)
class DriftReport:
    """Drift of a model's inputs over a window, per feature.

    Attributes
    ----------
    model : str
    experiment : str
        The experiment whose tracked predictions were read.
    since, until : str
        The window, ISO 8601 UTC (``until`` excluded).
    rows : int
        Input rows in the window (whole inputs, and the samples of inputs over
        100 rows).
    predictions, errors : int
        Tracked predictions in the window, and how many of them failed.
    reference : dict
        ``name``, ``revision`` and ``rows`` of the reference dataset.
    thresholds : dict
    features : tuple of FeatureDrift
    drifted : bool
        Whether any feature drifted.
    status : {'ok', 'no_data'}
        ``no_data`` when the window has no logged input rows.
    message : str or None
        What ``no_data`` means, or that older events were left out.
    truncated : bool
        Whether the window held more events than are read (the newest are).
    alerts : list of dict
        Alerts this computation raised (see :mod:`omops.monitoring.alerts`).
    """

    model: str
    experiment: str
    since: str
    until: str
    rows: int
    predictions: int
    errors: int
    reference: dict[str, Any]
    thresholds: dict[str, float]
    features: tuple[FeatureDrift, ...]
    drifted: bool
    status: str = "ok"
    message: str | None = None
    truncated: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        """Failed predictions per prediction in the window (None without predictions)."""
        return self.errors / self.predictions if self.predictions else None

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what ``GET /api/v1/model/{name}/drift`` answers."""
        value = asdict(self)
        value["features"] = [asdict(f) for f in self.features]
        value["error_rate"] = self.error_rate
        return value

    def to_frame(self) -> pd.DataFrame:
        """One row per feature: name, kind, test, statistic, p_value, psi, drifted, rows ..."""
        import pandas as pd

        columns = [f.name for f in FeatureDrift.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(f) for f in self.features], columns=columns)

    def __repr__(self) -> str:
        state = "no data" if self.status == "no_data" else f"drifted={self.drifted}"
        return (
            f"<DriftReport {self.model!r} {self.since}..{self.until} rows={self.rows} "
            f"{state} features={self.drifted_features or '[]'}>"
        )


def kind_of(column: pd.Series) -> str:
    """``numeric`` for numbers (not booleans), ``categorical`` for everything else."""
    import pandas as pd

    dtype = column.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    return NUMERIC if numeric else CATEGORICAL


def _features(om: Omega, model: str, config: MonitorConfig, columns: Sequence[str]) -> list[str]:
    """Watched columns: the configured ones, else the model's inputs, else the reference's."""
    if config.features:
        return list(config.features)
    meta = om.models.metadata(model)
    names = meta.kind_meta.get("feature_names")
    return [str(n) for n in names] if names else list(columns)


def reference_columns(om: Omega, model: str, name: str, config: MonitorConfig) -> Any:
    """The reference's metadata and the watched columns, checked without reading the data."""
    check_reference(name)
    meta = om.datasets.metadata(name)
    if meta.columns is None:
        raise InvalidData(
            f"reference {name!r} is a {meta.kind}, not a table; store the model's training "
            "inputs as a DataFrame (om.datasets.put(X_train, name))"
        )
    features = _features(om, model, config, meta.columns)
    missing = [f for f in features if f not in meta.columns]
    if missing:
        raise InvalidData(
            f"reference {name!r} has no column(s) {missing} that model {model!r} takes "
            f"(it has {meta.columns}); store the training inputs with all of them, or watch "
            "fewer with exp.track(model, features=[...])"
        )
    return meta, features


def reference_of(
    om: Omega, model: str, name: str, config: MonitorConfig
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference's watched columns, and its ``name``, ``revision`` and ``rows``."""
    import pandas as pd

    meta, features = reference_columns(om, model, name, config)
    frame = om.datasets.get(f"{parse_reference(name).name}@{meta.revision}", columns=features)
    if not isinstance(frame, pd.DataFrame):  # a Series of one column
        frame = frame.to_frame()
    info = {"name": name, "revision": meta.revision, "rows": len(frame)}
    return frame, info


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _judge(
    name: str,
    kind: str,
    result: tuple[float, float, float] | None,
    rows: int,
    reference_rows: int,
    thresholds: Mapping[str, float],
) -> FeatureDrift:
    test = "ks" if kind == NUMERIC else "chi2"
    if result is None:
        note = "no values in the window" if rows == 0 else "no values in the reference"
        return FeatureDrift(name, kind, test, None, None, None, False, rows, reference_rows, note)
    statistic, p_value, psi = result
    note = None
    if rows < thresholds["min_rows"]:
        note = f"{rows} values in the window, fewer than min_rows={thresholds['min_rows']:g}"
    drifted = note is None and p_value < thresholds["p_value"] and psi > thresholds["psi"]
    return FeatureDrift(
        name,
        kind,
        test,
        _finite(statistic),
        _finite(p_value),
        _finite(psi),
        bool(drifted),
        rows,
        reference_rows,
        note,
    )


def numeric_reference(column: pd.Series) -> np.ndarray:
    """The finite values of a numeric reference column, sorted."""
    values = column.to_numpy(dtype="float64", na_value=np.nan)
    return np.sort(values[np.isfinite(values)])


def categorical_counts(con: Any, column: pd.Series) -> pd.Series:
    """Counts per category of a reference column, the categories spelled as logged.

    A logged input's cell is JSON; DuckDB renders the reference's values
    through JSON too, so ``True`` and ``true``, ``'a'`` and ``"a"`` meet.
    """
    import pyarrow as pa

    # A stored column holds one type (the pandas plugin refuses others): Arrow takes it.
    con.register("reference_column", pa.table({"c": pa.array(column, from_pandas=True)}))
    try:
        found = con.execute(
            "SELECT to_json(c) ->> '$' AS k, count(*) AS n FROM reference_column "
            "WHERE c IS NOT NULL GROUP BY k"
        ).df()
    finally:
        con.unregister("reference_column")
    return found.set_index("k")["n"]


def _aligned(expected: pd.Series, actual: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two count vectors over the union of their categories (zero where one has none)."""
    import pandas as pd

    both = pd.concat([expected.rename("e"), actual.rename("a")], axis=1).fillna(0)
    return both["e"].to_numpy("float64"), both["a"].to_numpy("float64")


def _compare(
    window: Predictions, index: int, kind: str, column: pd.Series
) -> tuple[tuple[float, float, float] | None, int, int]:
    """(statistic, p-value, PSI), values in the window and in the reference, of one feature."""
    con = window.con
    if kind == NUMERIC:
        reference = numeric_reference(column)
        current = con.execute(
            f"SELECT f{index} AS x FROM inputs WHERE isfinite(f{index})"
        ).fetchnumpy()["x"]
        current = np.asarray(current, dtype="float64")
        if len(current) == 0 or len(reference) == 0:
            return None, len(current), len(reference)
        statistic, p_value = _stats.ks_2samp(reference, current)
        edges = _stats.quantile_edges(reference, BINS)
        psi = float(
            _stats.psi(_stats.bin_counts(reference, edges), _stats.bin_counts(current, edges))
        )
        return (statistic, p_value, psi), len(current), len(reference)
    expected = categorical_counts(con, column)
    actual = (
        con.execute(
            f"SELECT f{index} AS k, count(*) AS n FROM inputs WHERE f{index} IS NOT NULL GROUP BY k"
        )
        .df()
        .set_index("k")["n"]
    )
    rows, reference_rows = int(actual.sum()), int(expected.sum())
    if rows == 0 or reference_rows == 0:
        return None, rows, reference_rows
    e, a = _aligned(expected, actual)
    statistic, p_value = _stats.chi2_homogeneity(e, a)
    return (statistic, p_value, float(_stats.psi(e, a))), rows, reference_rows


def compute_drift(
    om: Omega,
    tracker: Tracker,
    window: Window,
    reference: str | None,
) -> DriftReport:
    """The drift report of ``tracker``'s model over ``window`` against ``reference``.

    Without a reference, only the predictions and errors are counted (no features).
    """
    model, config = tracker.model, tracker.config
    frame, info = (None, {}) if reference is None else reference_of(om, model, reference, config)
    kinds = {} if frame is None else {name: kind_of(frame[name]) for name in frame.columns}
    thresholds = dict(config.thresholds)
    since, until = window.iso()
    features = []
    rows = 0
    with predictions(om, tracker.experiment_id, model, window) as logged:
        total, errors = logged.health()
        if kinds:
            rows = logged.load_inputs(kinds)
        for index, (name, kind) in enumerate(kinds.items()):
            result, seen, known = _compare(logged, index, kind, frame[name])
            features.append(_judge(name, kind, result, seen, known, thresholds))
        truncated = logged.truncated
    message = None
    status = "ok"
    if total == 0 or (kinds and rows == 0):
        status = "no_data"
        message = (
            f"no tracked predictions with inputs of model {model!r} in experiment "
            f"{tracker.experiment!r} from {since} to {until}"
        )
    elif reference is None:
        message = f"model {model!r} has no reference dataset: predictions and errors only"
    elif truncated:
        message = "the window held more events than are read; the newest were compared"
    return DriftReport(
        model=model,
        experiment=tracker.experiment,
        since=since,
        until=until,
        rows=rows,
        predictions=total,
        errors=errors,
        reference=info,
        thresholds=thresholds,
        features=tuple(features),
        drifted=any(f.drifted for f in features),
        status=status,
        message=message,
        truncated=truncated,
    )


def drift(
    om: Omega,
    model: str,
    *,
    since: Any = "1d",
    until: Any = None,
    reference: str | None = None,
    experiment: str | None = None,
    alert: bool = True,
) -> DriftReport:
    """Drift of ``model``'s inputs over a window of its tracked predictions.

    Parameters
    ----------
    om : Omega
    model : str
        A model tracked by an experiment (``exp.track(model, reference=...)``).
    since : str, datetime or timedelta, default='1d'
        Start of the window: ``'15m'``, ``'1h'``, ``'1d'`` before ``until``, a
        datetime or an ISO 8601 text (naive times are UTC).
    until : str or datetime, optional
        End of the window (excluded); now by default.
    reference : str, optional
        Dataset of training inputs; the one configured with ``track`` by default.
    experiment : str, optional
        The tracking experiment, when several track the model.
    alert : bool, default=True
        Log an ``alert`` event (and POST the webhook) when a feature drifted
        or the error rate is over its threshold; see
        :func:`omops.monitoring.alerts.raise_alerts`.

    Returns
    -------
    DriftReport

    Raises
    ------
    NotFound
        The model, the reference or the experiment does not exist, or the
        model is not tracked.
    InvalidQuery
        No reference given or configured; a malformed window.
    InvalidData
        The reference is not a table or lacks columns the model takes.
    """
    name = _model_name(model)
    window = parse_window(since, until)
    tracker = tracker_for(om, name, experiment=experiment, reference=reference)
    chosen = reference or tracker.config.reference
    if not chosen:
        raise InvalidQuery(
            f"model {name!r} has no reference dataset to compare with; track it with "
            f"exp.track({name!r}, reference='<training inputs>') or pass reference="
        )
    report = compute_drift(om, tracker, window, chosen)
    if alert:
        from omops.monitoring.alerts import raise_alerts

        report.alerts.extend(raise_alerts(om, tracker, report))
    return report


def _model_name(model: Any) -> str:
    ref = parse_reference(model)
    if ref.columns is not None or ref.ref is not None:
        raise InvalidQuery(
            f"give the model's name alone ({ref.name!r}), not {model!r}: drift covers the "
            "predictions of every revision"
        )
    return ref.name

"""Experiments: runs of logged metrics, params, artifacts and task events."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from omops._system import Sampler, node, system_info, user
from omops.catalog.tracking import event_row, json_text
from omops.errors import InvalidData, InvalidQuery, NotFound, PluginError
from omops.names import check_name
from omops.omega import Omega

__all__ = ["CURRENT", "PROVIDERS", "Experiment"]

PROVIDERS = ("simple", "profiling", "notrack")
COLUMNS = ["experiment", "run", "step", "dt", "event", "key", "value", "node", "user"]
#: The tracking context of the innermost active ``with experiment(...)`` block;
#: the runtime puts it into every task it submits.
CURRENT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "omops_experiment", default=None
)
_ARTIFACTS = "_experiments"
_MAPPINGS = (dict, Mapping)  # dict first: the common case skips the ABC check


class Experiment:
    """An experiment: numbered runs, each a sequence of events.

    Parameters
    ----------
    om : Omega
    name : str
        Experiment name (a valid object name).
    provider : {'simple', 'profiling', 'notrack'}, default='simple'
        ``profiling`` adds CPU and memory samples every ``interval`` seconds,
        here and in every task run inside the block; ``notrack`` logs nothing.
    interval : float, default=1.0
        Seconds between profiling samples.

    Examples
    --------
    >>> import omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> with om.runtime.experiment('myexp') as exp:
    ...     exp.log_metric('accuracy', 0.93)
    ...     exp.log_param('C', 1.0)
    >>> exp.data(event='metric')[['run', 'event', 'key', 'value']]
       run   event       key  value
    0    1  metric  accuracy   0.93
    """

    def __init__(
        self, om: Omega, name: str, provider: str = "simple", *, interval: float = 1.0
    ) -> None:
        if provider not in PROVIDERS:
            raise PluginError(
                f"tracking provider {provider!r} is not one of {', '.join(PROVIDERS)}"
            )
        self.om = om
        self.name = check_name(name)
        self.provider = provider
        self.interval = float(interval)
        self._id: int | None = None
        self._run: int | None = None
        self._token: contextvars.Token | None = None
        self._sampler: Sampler | None = None

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r} provider={self.provider!r} run={self._run}>"

    @property
    def id(self) -> int:
        if self._id is None:
            self._id = self.om.catalog.tracking.experiment(self.om.bucket, self.name).id
        return self._id

    def _existing_id(self) -> int | None:
        """The experiment's id, or None when it was never written: reading creates nothing."""
        if self._id is None:
            try:
                record = self.om.catalog.tracking.experiment(
                    self.om.bucket, self.name, create=False
                )
            except NotFound:
                return None
            self._id = record.id
        return self._id

    @property
    def run(self) -> int | None:
        """The current run; the latest (or a new first one) outside a ``with`` block.

        ``None`` with ``notrack``, which opens no runs.
        """
        if self._run is None and self.provider != "notrack":
            tracking = self.om.catalog.tracking
            self._run = tracking.latest_run(self.id) or tracking.start_run(self.id, self.provider)
        return self._run

    @property
    def context(self) -> dict[str, Any]:
        """What a task needs to log into this run (``notrack``: that it must not log)."""
        if self.provider == "notrack":
            return {"experiment": self.name, "provider": "notrack"}
        return {
            "experiment_id": self.id,
            "experiment": self.name,
            "run": self.run,
            "provider": self.provider,
            "interval": self.interval,
        }

    # -- runs --------------------------------------------------------------

    def start(self) -> int | None:
        """Open a new run, log ``start`` and ``system``; returns the run number.

        With ``notrack`` nothing is written and the run is ``None``.
        """
        if self.provider == "notrack":
            return None
        self._run = self.om.catalog.tracking.start_run(self.id, self.provider)
        self.log_event("start", None, None)
        self.log_event("system", "system", system_info())
        if self.provider == "profiling":
            self._sampler = Sampler(
                lambda s: self.log_event("system", "profile", s), self.interval
            ).start()
        return self._run

    def stop(self, status: str = "ok") -> None:
        """Log ``stop`` and close the run."""
        if self.provider == "notrack":
            return
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        self.log_event("stop", None, {"status": status})
        self.om.catalog.tracking.stop_run(self.id, self.run)

    def __enter__(self) -> Experiment:
        self.start()
        self._token = CURRENT.set(self.context)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is not None:
            CURRENT.reset(self._token)
            self._token = None
        self.stop("error" if exc_type else "ok")

    # -- logging -----------------------------------------------------------

    def log_event(
        self, event: str, key: str | None = None, value: Any = None, *, step: int | None = None
    ) -> None:
        """Log one event of any type in the current run."""
        if self.provider == "notrack":
            return
        self.om.catalog.tracking.log([event_row(self.id, self.run, event, key, value, step)])

    def log_events(self, events: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        """Log many events in one transaction; returns the number logged.

        Each event is a dict with ``event`` (default ``'metric'``), ``key``,
        ``value`` and ``step``, or a tuple ``(event, key, value[, step])``.
        """
        if self.provider == "notrack":
            return 0
        experiment_id, run, here, who, now = self.id, self.run, node(), user(), time.time
        rows = []
        for item in events:
            if isinstance(item, _MAPPINGS):
                event, key, value, step = (
                    item.get("event", "metric"),
                    item.get("key"),
                    item.get("value"),
                    item.get("step"),
                )
            else:
                event, key, value, *rest = item
                step = rest[0] if rest else None
            rows.append(
                (experiment_id, run, step, now(), str(event), key, json_text(value), here, who)
            )
        self.om.catalog.tracking.log(rows)
        return len(rows)

    def log_metric(self, key: str, value: float, *, step: int | None = None) -> None:
        """Log a metric (a number), optionally at a step (epoch, iteration ...)."""
        if not isinstance(value, (int, float)) and not hasattr(value, "item"):
            raise InvalidData(f"a metric is a number; got {type(value).__name__} for {key!r}")
        self.log_event("metric", key, value, step=step)

    def log_param(self, key: str, value: Any) -> None:
        """Log a parameter (any JSON-able value)."""
        self.log_event("param", key, value)

    def log_data(self, key: str, value: Any, *, step: int | None = None) -> None:
        """Log a data event (any JSON-able value)."""
        self.log_event("data", key, value, step=step)

    def log_artifact(self, obj: Any, name: str, **kwargs: Any) -> str | None:
        """Store ``obj`` through the plugins and log an ``artifact`` event.

        DataFrames, arrays and JSON go to ``om.datasets``, models to
        ``om.models``, under ``_experiments/<experiment>/<run>/<name>``.
        Returns the stored name (``None`` with ``notrack``: nothing is stored).
        """
        if self.provider == "notrack":
            return None
        stored = f"{_ARTIFACTS}/{self.name}/{self.run}/{check_name(name)}"
        for repository in (self.om.datasets, self.om.models):
            try:
                meta = repository.put(obj, stored, append=False, **kwargs)
            except PluginError:
                continue
            self.log_event(
                "artifact",
                name,
                {
                    "name": name,
                    "store": repository.store,
                    "ref": f"{stored}@{meta.revision}",
                    "kind": meta.kind,
                },
            )
            return stored
        raise PluginError(f"no plugin stores a {type(obj).__name__}; pass kind='python.pickle'")

    def restore_artifact(self, name: str, *, run: int | None = None) -> Any:
        """The object logged with :meth:`log_artifact` (latest run that has it, or ``run``)."""
        experiment_id = self._existing_id()
        rows = (
            []
            if experiment_id is None
            else self.om.catalog.tracking.events(
                experiment_id, runs_=None if run is None else [run], event="artifact", key=name
            )
        )
        if not rows:
            raise NotFound(
                f"no artifact {name!r} in experiment {self.name!r}"
                + (f" run {run}" if run is not None else "")
            )
        info = orjson.loads(rows[-1][5])
        return getattr(self.om, info["store"]).get(info["ref"])

    # -- tracking models in production ---------------------------------------

    def track(
        self,
        model: str,
        reference: str | None = None,
        *,
        thresholds: Mapping[str, float] | None = None,
        webhook: str | None = None,
        features: Sequence[str] | None = None,
        alert_every: str | float | None = None,
    ) -> None:
        """Log every prediction of ``model`` (runtime and REST) into this experiment.

        Each prediction is a ``predict`` event with the input (whole up to
        100 rows, else a sample of 10 and a hash), the output, the latency
        in ms and ``status`` (``ok``, or ``error`` with the error of a failed
        prediction). The other arguments monitor the model's inputs for drift
        (:mod:`omops.monitoring`); given ones replace those set before, the
        others are kept.

        Parameters
        ----------
        model : str
        reference : str, optional
            Dataset of the model's training inputs to compare predictions with.
        thresholds : dict, optional
            Any of ``p_value`` (0.05), ``psi`` (0.2), ``error_rate`` (0.05),
            ``min_rows`` (30); see :data:`omops.monitoring.DEFAULT_THRESHOLDS`.
        webhook : str, optional
            ``http(s)://`` URL that alerts are POSTed to ('' for the
            ``monitor_webhook`` setting); ``{placeholders}`` in it are filled
            from ``om.secrets`` when an alert is sent.
        features : list of str, optional
            Columns to watch (default: the model's input columns).
        alert_every : str or float, optional
            Least time between two alerts of the same kind ('1h' by default).

        See Also
        --------
        omops.runtime.ModelProxy.drift : the drift report of a tracked model.
        """
        from omops.runtime._tracking import forget_trackers

        self.om.models.metadata(model)  # NotFound for a typo, now
        options = (reference, thresholds, webhook, features, alert_every)
        config = None
        if any(option is not None for option in options):
            config = self._monitor_config(model, *options)
        self.om.catalog.tracking.track(self.om.bucket, model, self.id)
        if config is not None:
            from omops.monitoring._config import save_config

            save_config(self.om, self.id, model, config)
        forget_trackers(self.om)

    def _monitor_config(self, model: str, *options: Any) -> Any:
        """The model's monitoring configuration here with ``options`` applied, checked."""
        from omops.monitoring._config import config_of
        from omops.monitoring.drift import reference_columns

        reference, thresholds, webhook, features, alert_every = options
        current, _ = config_of(self.om, self.id, model)
        config = current.updated(
            reference=reference,
            thresholds=thresholds,
            webhook=webhook,
            features=features,
            alert_every=alert_every,
        )
        if config.reference:
            reference_columns(self.om, model, config.reference, config)  # NotFound, InvalidData now
        return config

    def untrack(self, model: str) -> None:
        """Stop logging predictions of ``model``."""
        from omops.runtime._tracking import forget_trackers

        experiment_id = self._existing_id()
        if experiment_id is not None:
            self.om.catalog.tracking.untrack(self.om.bucket, model, experiment_id)
        forget_trackers(self.om)

    # -- reading -----------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Runs with provider, start and stop times."""
        experiment_id = self._existing_id()
        return [] if experiment_id is None else self.om.catalog.tracking.runs(experiment_id)

    def _select_runs(self, run: str | int | Sequence[int], experiment_id: int) -> list[int] | None:
        if run == "all":
            return None
        if run == "latest":
            from omops.runtime._tracking import flush_events

            flush_events(self.om)
            latest = self.om.catalog.tracking.latest_run(experiment_id)
            return [latest] if latest is not None else []
        if isinstance(run, int) and not isinstance(run, bool):
            return [run]
        if (
            isinstance(run, Sequence)
            and not isinstance(run, str)
            and all(isinstance(r, int) for r in run)
        ):
            return list(run)
        raise InvalidQuery(
            f"run must be 'all', 'latest', a run number or a list of them; got {run!r}"
        )

    def data(
        self,
        *,
        event: str | Sequence[str] | None = None,
        key: str | Sequence[str] | None = None,
        run: str | int | Sequence[int] = "latest",
        since: Any = None,
        raw: bool = False,
    ) -> Any:
        """Events as a DataFrame: experiment, run, step, dt, event, key, value, node, user.

        Parameters
        ----------
        event, key : str or list of str, optional
            Only these event types / keys.
        run : 'latest' (default), 'all', int or list of int
        since : datetime or str, optional
            Only events at or after this time (naive times are UTC).
        raw : bool, default=False
            Keep ``value`` as JSON text (fastest for millions of events).

        Returns
        -------
        DataFrame
            One row per event in logging order; ``dt`` is ``datetime64[ns, UTC]``,
            ``step`` nullable ``Int64``, ``value`` the decoded JSON.
        """
        from omops.runtime._tracking import flush_events

        flush_events(self.om)
        # An experiment never written to reads as no events (and is not created).
        experiment_id = self._existing_id()
        experiment_id = -1 if experiment_id is None else experiment_id
        columns = self.om.catalog.tracking.columns(
            experiment_id,
            runs_=self._select_runs(run, experiment_id),
            event=event,
            key=key,
            since=None if since is None else _epoch(since),
            raw=raw,
        )
        return _frame(self.name, columns, raw=raw)

    def plot(self, key: str, *, run: str | int | Sequence[int] = "all", ax: Any = None) -> Any:
        """A matplotlib figure of metric ``key`` over steps (or time), one line per run.

        The figure is not registered with pyplot (no global state, nothing to
        close); Jupyter displays it, ``fig.savefig(...)`` writes it.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise PluginError("plotting needs matplotlib: pip install 'omops[plot]'") from None
        frame = self.data(event="metric", key=key, run=run)
        if frame.empty:
            raise NotFound(
                f"no metric {key!r} in experiment {self.name!r} (run={run!r}); "
                "log one with exp.log_metric(key, value)"
            )
        if ax is None:
            fig = Figure(figsize=(7, 4))
            ax = fig.subplots()
        else:
            fig = ax.figure
        by_step = bool(frame["step"].notna().all())
        for number, group in frame.groupby("run"):
            x = group["step"].to_numpy("int64") if by_step else group["dt"].dt.tz_convert(None)
            ax.plot(x, group["value"].astype(float).to_numpy(), marker="o", label=f"run {number}")
        ax.set_title(f"{self.name}: {key}")
        ax.set_xlabel("step" if by_step else "time (UTC)")
        ax.set_ylabel(key)
        ax.legend()
        return fig

    def drop(self) -> None:
        """Delete the experiment with all runs and events (nothing, if it was never written)."""
        experiment_id = self._existing_id()
        if experiment_id is not None:
            self.om.catalog.tracking.drop(experiment_id)
        self._id = self._run = None


def _epoch(since: Any) -> float:
    """Seconds since the epoch of a datetime, Timestamp or string (naive means UTC)."""
    import pandas as pd

    stamp = pd.Timestamp(since)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def _frame(name: str, columns: Mapping[str, Sequence[Any]], *, raw: bool) -> Any:
    """The events DataFrame from :meth:`Tracking.columns`, through Arrow (no per-row Python)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    size = len(columns["id"])
    text = pa.string()
    table = pa.table(
        {
            "experiment": pa.repeat(pa.scalar(name, text), size),
            "step": pa.array(columns["step"], pa.int64()),
            "dt": pa.array(columns["dt"], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event": pa.array(columns["event"], text),
            "key": pa.array(columns["key"], text),
            "node": pa.array(columns["node"], text),
            "user": pa.array(columns["user"], text),
        }
    )
    frame = table.to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get, coerce_temporal_nanoseconds=True
    )
    frame.insert(1, "run", np.asarray(columns["run"], dtype="int64"))
    values = columns["value"]
    frame.insert(
        6,
        "value",
        pd.array(values, dtype="str") if raw else pd.Series(values, dtype=object),
    )
    return frame[COLUMNS]

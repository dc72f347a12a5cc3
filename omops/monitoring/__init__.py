"""Monitoring of tracked models in production: input drift, errors, latency, alerts.

A model tracked with a reference dataset (its training inputs)::

    exp = om.runtime.experiment('prod')
    exp.track('forecast', reference='train_X', thresholds={'psi': 0.25})
    report = om.runtime.model('forecast').drift(since='1d')
    report.to_frame()       # per feature: test, statistic, p_value, psi, drifted

* :func:`drift` -- a :class:`DriftReport` over a window of tracked predictions;
* :func:`monitor` -- predictions, errors, latency percentiles and PSI per
  feature over time (the dashboard's production page);
* :func:`check` -- drift and error rate of every monitored model, raising
  alerts (``om monitor check``, for a schedule).

See :mod:`omops.monitoring.drift` for the tests and thresholds and
:mod:`omops.monitoring.alerts` for alerts and webhooks.
"""

from omops.monitoring._config import DEFAULT_THRESHOLDS, MonitorConfig, trackers
from omops.monitoring._window import parse_duration, parse_window
from omops.monitoring.alerts import deliver, raise_alerts
from omops.monitoring.check import check
from omops.monitoring.drift import DriftReport, FeatureDrift, drift
from omops.monitoring.series import MonitorSeries, monitor

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DriftReport",
    "FeatureDrift",
    "MonitorConfig",
    "MonitorSeries",
    "check",
    "deliver",
    "drift",
    "monitor",
    "parse_duration",
    "parse_window",
    "raise_alerts",
    "trackers",
]

"""``check``: every monitored model's drift and error rate, with alerts; for schedules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omops.errors import OmopsError
from omops.monitoring._config import tracker_for
from omops.monitoring._window import parse_window
from omops.monitoring.alerts import raise_alerts
from omops.monitoring.drift import compute_drift

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = ["check"]


def check(
    om: Omega, models: Sequence[str] | None = None, *, since: Any = "1h"
) -> list[dict[str, Any]]:
    """Compute drift and error rate of tracked models over the last ``since``; raise alerts.

    ``om monitor check`` runs this; schedule it (cron, a Kubernetes CronJob,
    or a scheduled notebook calling it) to be alerted without anyone looking.

    Parameters
    ----------
    om : Omega
        Its bucket's tracked models are checked.
    models : list of str, optional
        Only these; by default every tracked model of the bucket.
    since : str or datetime, default='1h'
        The window, ending now.

    Returns
    -------
    list of dict
        Per model: ``model``, ``experiment``, ``predictions``, ``errors``,
        ``rows``, ``drifted`` (None without a reference), ``features`` (the
        drifted ones), ``alerts`` raised now, ``status``; or ``model`` and
        ``error`` when the model could not be checked (the others still are).
    """
    window = parse_window(since)
    names = (
        list(models) if models else sorted({m for m, _ in om.catalog.tracking.tracked(om.bucket)})
    )
    results = []
    for name in names:
        try:
            tracker = tracker_for(om, name)
            reference = tracker.config.reference
            report = compute_drift(om, tracker, window, reference)
            alerts = raise_alerts(om, tracker, report)
        except OmopsError as exc:
            results.append({"model": name, "error": str(exc)})
            continue
        results.append(
            {
                "model": name,
                "experiment": report.experiment,
                "since": report.since,
                "until": report.until,
                "predictions": report.predictions,
                "errors": report.errors,
                "rows": report.rows,
                "drifted": report.drifted if reference else None,
                "features": report.drifted_features,
                "alerts": alerts,
                "status": report.status,
            }
        )
    return results

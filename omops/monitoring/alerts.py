"""Alerts: drifted features or too many failed predictions, logged and POSTed.

An alert is an ``alert`` event in the experiment that tracks the model (key:
the model's name) and, when a webhook is configured (the model's
``webhook``, else the ``monitor_webhook`` setting), a JSON POST to it::

    {"source": "omops", "bucket": "default", "alert": {"model": ..., "type": "drift",
     "features": [...], "message": ..., "since": ..., "until": ..., ...}}

A webhook URL may hold ``{placeholders}`` filled from ``om.secrets`` at
delivery (``https://hooks.example.com/services/{alert_token}``), so the
token is kept encrypted and out of the tracked configuration.

The POST has a timeout (:data:`WEBHOOK_TIMEOUT`); a receiver that is down,
slow or answers an error is logged (``omops.monitoring`` logger) and noted in
the event (``webhook.delivered: false``), never raised. Alerts are raised
where drift is computed (``model.drift()``, ``om monitor drift``, ``om
monitor check``), never on the path of a prediction, so a webhook cannot
slow or fail one. The same alert (type and features) is not repeated within
the model's ``alert_every`` (1 hour by default).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import orjson

from omops.catalog.tracking import event_row
from omops.config import mask_webhook
from omops.errors import OmopsError
from omops.monitoring._config import Tracker

if TYPE_CHECKING:
    from omops.monitoring.drift import DriftReport
    from omops.omega import Omega

__all__ = ["WEBHOOK_TIMEOUT", "deliver", "raise_alerts"]

#: Seconds a webhook receiver gets to answer.
WEBHOOK_TIMEOUT = 5.0
_LOG = logging.getLogger("omops.monitoring")


def _found(report: DriftReport) -> list[dict[str, Any]]:
    """The alerts a report calls for: drift, and an error rate over its threshold."""
    found = []
    common = {
        "model": report.model,
        "experiment": report.experiment,
        "since": report.since,
        "until": report.until,
        "predictions": report.predictions,
    }
    if report.drifted:
        features = report.drifted_features
        found.append(
            {
                **common,
                "type": "drift",
                "features": features,
                "reference": report.reference,
                "rows": report.rows,
                "details": [
                    {"name": f.name, "test": f.test, "p_value": f.p_value, "psi": f.psi}
                    for f in report.features
                    if f.drifted
                ],
                "message": f"model {report.model!r}: input drift in {', '.join(features)}",
            }
        )
    rate, limit = report.error_rate, report.thresholds["error_rate"]
    if rate is not None and report.predictions >= report.thresholds["min_rows"] and rate > limit:
        found.append(
            {
                **common,
                "type": "error_rate",
                "features": [],
                "errors": report.errors,
                "error_rate": rate,
                "threshold": limit,
                "message": (
                    f"model {report.model!r}: {report.errors} of {report.predictions} "
                    f"predictions failed ({rate:.1%}, threshold {limit:.1%})"
                ),
            }
        )
    return found


def _recent(om: Omega, tracker: Tracker, within: float) -> set[tuple[str, tuple[str, ...]]]:
    """(type, features) of the model's alerts in the last ``within`` seconds."""
    rows = om.catalog.tracking.events(
        tracker.experiment_id, event="alert", key=tracker.model, since=time.time() - within
    )
    recent = set()
    for row in rows:
        value = orjson.loads(row[5]) or {}
        recent.add((value.get("type"), tuple(value.get("features") or ())))
    return recent


def deliver(url: str, body: dict[str, Any], *, timeout: float = WEBHOOK_TIMEOUT) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url``; what happened, never an exception.

    Returns ``{'url': <scheme and host>, 'delivered': bool, 'status': int or None,
    'error': str or None}``.
    """
    outcome: dict[str, Any] = {"url": mask_webhook(url), "delivered": False, "status": None}
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=str),
        headers={"Content-Type": "application/json", "User-Agent": "omops-monitoring"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http/https only: checked by check_webhook)
            outcome["status"] = answer.status
            outcome["delivered"] = 200 <= answer.status < 300
    except urllib.error.HTTPError as exc:
        outcome["status"], outcome["error"] = exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, timeout, DNS ...
        reason = getattr(exc, "reason", exc)
        outcome["error"] = f"{type(exc).__name__}: {reason}"
    if not outcome["delivered"]:
        _LOG.warning(
            "could not deliver an alert to the webhook at %s: %s",
            outcome["url"],
            outcome.get("error") or f"status {outcome['status']}",
        )
    outcome.setdefault("error", None)
    return outcome


def _webhook(om: Omega, tracker: Tracker) -> str | None:
    return tracker.config.webhook or om.settings.monitor_webhook


def _post(om: Omega, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """Fill the URL's ``{placeholders}`` from ``om.secrets``, then :func:`deliver`."""
    try:
        target = om.secrets.fill(url)
    except OmopsError as exc:  # a secret missing, or no key to decrypt it
        outcome = {"url": mask_webhook(url), "delivered": False, "status": None, "error": str(exc)}
        _LOG.warning("could not deliver an alert to the webhook at %s: %s", outcome["url"], exc)
        return outcome
    return deliver(target, body)


def raise_alerts(om: Omega, tracker: Tracker, report: DriftReport) -> list[dict[str, Any]]:
    """Log (and POST) the alerts ``report`` calls for; returns those raised now.

    An alert of the same type and features raised within the model's
    ``alert_every`` seconds is not repeated.
    """
    found = _found(report)
    if not found:
        return []
    recent = _recent(om, tracker, tracker.config.alert_every)
    url = _webhook(om, tracker)
    tracking = om.catalog.tracking
    raised = []
    for alert in found:
        if (alert["type"], tuple(alert["features"])) in recent:
            continue
        alert["time"] = dt.datetime.now(dt.UTC).isoformat()
        if url:
            body = {"source": "omops", "bucket": om.bucket, "alert": alert}
            alert = {**alert, "webhook": _post(om, url, body)}
        run = tracking.latest_run(tracker.experiment_id) or tracking.start_run(
            tracker.experiment_id, "simple"
        )
        tracking.log([event_row(tracker.experiment_id, run, "alert", tracker.model, alert)])
        raised.append(alert)
    return raised

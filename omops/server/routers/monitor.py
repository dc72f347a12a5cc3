"""``/api/v1/model/{name}/drift`` and ``/monitor``: a tracked model in production.

Read-only (a read key is enough): they compute and answer, they raise no
alerts (``om monitor check`` and ``model.drift()`` do). Registered before
the model routes, whose ``/{name:path}`` would otherwise take these paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from omops.monitoring import drift, monitor
from omops.server._auth import Scope
from omops.server._deps import reader
from omops.server._payload import to_json_bytes

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/model", tags=["monitoring"])

_NUMBER = {"type": ["number", "null"]}
_FEATURE = {
    "type": "object",
    "required": ["name", "kind", "test", "statistic", "p_value", "psi", "drifted"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["numeric", "categorical"]},
        "test": {"type": "string", "enum": ["ks", "chi2"]},
        "statistic": _NUMBER,
        "p_value": _NUMBER,
        "psi": _NUMBER,
        "drifted": {"type": "boolean"},
        "rows": {"type": "integer", "description": "Values in the window"},
        "reference_rows": {"type": "integer"},
        "note": {"type": ["string", "null"], "description": "Why it was not judged"},
    },
}
_REFERENCE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "revision": {"type": "string"},
        "rows": {"type": "integer"},
    },
}
_DRIFT_SCHEMA = {
    "type": "object",
    "required": ["model", "since", "until", "rows", "reference", "drifted", "features"],
    "properties": {
        "model": {"type": "string"},
        "experiment": {"type": "string"},
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "rows": {"type": "integer", "description": "Input rows in the window"},
        "predictions": {"type": "integer"},
        "errors": {"type": "integer"},
        "error_rate": _NUMBER,
        "reference": _REFERENCE,
        "thresholds": {"type": "object", "additionalProperties": {"type": "number"}},
        "drifted": {"type": "boolean"},
        "status": {"type": "string", "enum": ["ok", "no_data"]},
        "message": {"type": ["string", "null"]},
        "truncated": {"type": "boolean"},
        "features": {"type": "array", "items": _FEATURE},
    },
}
_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["model", "series", "drift_series"],
    "properties": {
        "model": {"type": "string"},
        "experiment": {"type": "string"},
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "bucket": {"type": "number", "description": "Seconds per bucket of series"},
        "drift_bucket": {"type": "number", "description": "Seconds per bucket of drift_series"},
        "predictions": {"type": "integer"},
        "errors": {"type": "integer"},
        "series": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["t", "predictions", "errors", "p50_ms", "p95_ms", "p99_ms"],
                "properties": {
                    "t": {"type": "string", "format": "date-time"},
                    "predictions": {"type": "integer"},
                    "errors": {"type": "integer"},
                    "p50_ms": _NUMBER,
                    "p95_ms": _NUMBER,
                    "p99_ms": _NUMBER,
                },
            },
        },
        "drift_series": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["t", "feature", "psi", "drifted"],
                "properties": {
                    "t": {"type": "string", "format": "date-time"},
                    "feature": {"type": "string"},
                    "psi": _NUMBER,
                    "rows": {"type": "integer"},
                    "drifted": {"type": "boolean"},
                },
            },
        },
        "reference": {"oneOf": [_REFERENCE, {"type": "null"}]},
        "truncated": {"type": "boolean"},
        "message": {"type": ["string", "null"]},
    },
}

Since = Query(
    description="Start of the window: '15m', '1h', '1d' before until, or an ISO 8601 time "
    "(naive times are UTC)"
)
Until = Query(description="End of the window (excluded), ISO 8601; now when absent")
Experiment = Query(description="The tracking experiment, when several track the model")


def _json(value: Any) -> Response:
    return Response(to_json_bytes(value), media_type="application/json")


@router.get(
    "/{name:path}/drift",
    summary="Input drift of a tracked model",
    description=(
        "Compares the inputs of the model's tracked predictions in the window with its "
        "reference dataset (training inputs, set with exp.track(model, reference=...) or "
        "?reference=): numeric features by Kolmogorov-Smirnov and PSI, others by chi-square "
        "and PSI. A feature drifted when p_value < thresholds.p_value and psi > thresholds.psi "
        "with at least thresholds.min_rows values. A window without predictions answers "
        "status 'no_data'. Raises no alerts."
    ),
    responses={200: {"content": {"application/json": {"schema": _DRIFT_SCHEMA}}}},
)
def model_drift(
    name: str,
    scope: Annotated[Scope, Depends(reader)],
    since: Annotated[str, Since] = "1d",
    until: Annotated[str | None, Until] = None,
    reference: Annotated[
        str | None, Query(description="Reference dataset instead of the configured one")
    ] = None,
    experiment: Annotated[str | None, Experiment] = None,
) -> Response:
    report = drift(
        scope.om,
        name,
        since=since,
        until=until,
        reference=reference or None,
        experiment=experiment or None,
        alert=False,
    )
    return _json(report.to_dict())


@router.get(
    "/{name:path}/monitor",
    summary="A tracked model over time: predictions, errors, latency, drift",
    description=(
        "Per time bucket: predictions, failed ones and latency percentiles (ms); per coarser "
        "bucket and feature: the PSI against the reference and whether it is over "
        "thresholds.psi. At most 1440 buckets; the newest 1,000,000 events of the window "
        "(about 512 MiB of them at most)."
    ),
    responses={200: {"content": {"application/json": {"schema": _MONITOR_SCHEMA}}}},
)
def model_monitor(
    name: str,
    scope: Annotated[Scope, Depends(reader)],
    since: Annotated[str, Since] = "1h",
    until: Annotated[str | None, Until] = None,
    bucket: Annotated[str, Query(description="Width of a series bucket: '1m', '5m', '1h'")] = "1m",
    drift_bucket: Annotated[
        str | None,
        Query(description="Width of a drift_series bucket; chosen from the window when absent"),
    ] = None,
    experiment: Annotated[str | None, Experiment] = None,
) -> Response:
    found = monitor(
        scope.om,
        name,
        since=since,
        until=until,
        bucket=bucket,
        drift_bucket=drift_bucket or None,
        experiment=experiment or None,
    )
    return _json(found.to_dict())

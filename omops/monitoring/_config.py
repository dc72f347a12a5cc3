"""A tracked model's monitoring configuration: reference, thresholds, webhook.

The configuration is kept as ``monitor`` events of the experiment that
tracks the model (key: the model's name): the newest one is in force, older
ones say who changed what when. No table of its own, so no schema change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from omops.catalog.tracking import event_row
from omops.config import mask_webhook
from omops.errors import InvalidQuery, NotFound
from omops.monitoring._window import parse_duration
from omops.names import parse_reference

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MonitorConfig",
    "Tracker",
    "config_of",
    "save_config",
    "tracker_for",
    "trackers",
]

#: Thresholds in force unless a model's configuration says otherwise.
#: A feature drifted when its test's p-value is below ``p_value`` AND its PSI
#: above ``psi``; a window's error rate alerts above ``error_rate``; neither
#: drift nor the error rate is judged on fewer than ``min_rows`` rows/predictions.
DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {"p_value": 0.05, "psi": 0.2, "error_rate": 0.05, "min_rows": 30}
)
#: Seconds between two alerts of the same kind for one model (unless configured).
DEFAULT_ALERT_EVERY = 3600.0
_BOUNDS = {
    "p_value": (0.0, 1.0),
    "psi": (0.0, math.inf),
    "error_rate": (0.0, 1.0),
    "min_rows": (1.0, math.inf),
}


@dataclass(frozen=True)
class MonitorConfig:
    """How one tracked model is monitored.

    Attributes
    ----------
    reference : str or None
        Dataset of the model's training inputs (``name`` or ``name@tag``).
    thresholds : dict
        ``p_value``, ``psi``, ``error_rate``, ``min_rows``; see
        :data:`DEFAULT_THRESHOLDS`.
    webhook : str or None
        URL that alerts are POSTed to (``http://`` or ``https://``); the
        ``monitor_webhook`` setting when None.
    features : tuple of str or None
        Columns to watch; by default the model's input columns.
    alert_every : float
        Seconds between two alerts of the same kind and features.
    """

    reference: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    webhook: str | None = None
    features: tuple[str, ...] | None = None
    alert_every: float = DEFAULT_ALERT_EVERY

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """JSON-able; the webhook masked (its path often is a token) unless ``secrets``."""
        value = asdict(self)
        value["thresholds"] = dict(self.thresholds)
        value["features"] = None if self.features is None else list(self.features)
        if not secrets:
            value["webhook"] = mask_webhook(self.webhook)
        return value

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> MonitorConfig:
        features = value.get("features")
        return cls(
            reference=value.get("reference"),
            thresholds={**DEFAULT_THRESHOLDS, **(value.get("thresholds") or {})},
            webhook=value.get("webhook"),
            features=None if features is None else tuple(features),
            alert_every=float(value.get("alert_every") or DEFAULT_ALERT_EVERY),
        )

    def updated(
        self,
        *,
        reference: str | None = None,
        thresholds: Mapping[str, Any] | None = None,
        webhook: str | None = None,
        features: Sequence[str] | None = None,
        alert_every: Any = None,
    ) -> MonitorConfig:
        """This configuration with the given values replaced (checked first)."""
        changes: dict[str, Any] = {}
        if reference is not None:
            changes["reference"] = check_reference(reference)
        if thresholds is not None:
            changes["thresholds"] = {**self.thresholds, **check_thresholds(thresholds)}
        if webhook is not None:
            changes["webhook"] = check_webhook(webhook) or None
        if features is not None:
            changes["features"] = check_features(features)
        if alert_every is not None:
            changes["alert_every"] = parse_duration(alert_every, what="alert_every")
        return replace(self, **changes)


def check_reference(reference: Any) -> str:
    """A dataset name (``name`` or ``name@tag``) without a column selector."""
    ref = parse_reference(reference)
    if ref.columns is not None:
        raise InvalidQuery(
            f"reference {reference!r} has a column selector; give the dataset's name "
            "and, to watch fewer columns, features=[...]"
        )
    return reference


def check_thresholds(thresholds: Any) -> dict[str, float]:
    """Known threshold names with numbers in their ranges; InvalidQuery otherwise."""
    if not isinstance(thresholds, Mapping):
        raise InvalidQuery(
            f"thresholds must be a dict such as {{'psi': 0.25}}, got {type(thresholds).__name__}"
        )
    checked = {}
    for name, value in thresholds.items():
        if name not in _BOUNDS:
            raise InvalidQuery(
                f"unknown threshold {name!r}; the thresholds are {', '.join(_BOUNDS)}"
            )
        low, high = _BOUNDS[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (low <= value <= high)
        ):
            raise InvalidQuery(
                f"threshold {name}={value!r} must be a number from {low:g} to {high:g}"
            )
        checked[name] = float(value)
    return checked


def check_webhook(url: Any) -> str:
    """An ``http(s)://host/...`` URL (or '' to fall back to the ``monitor_webhook`` setting)."""
    if url == "":
        return url
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidQuery(
            f"webhook must be an http:// or https:// URL with a host, got {mask_webhook(url)!r}"
        )
    return url


def check_features(features: Any) -> tuple[str, ...]:
    if isinstance(features, str) or not all(isinstance(f, str) and f for f in features):
        raise InvalidQuery(f"features must be a list of column names, got {features!r}")
    if not features:
        raise InvalidQuery("features must name at least one column (None watches them all)")
    return tuple(features)


@dataclass(frozen=True)
class Tracker:
    """An experiment that tracks a model, and the model's monitoring configuration there."""

    experiment_id: int
    experiment: str
    model: str
    config: MonitorConfig
    configured: bool


def config_of(om: Omega, experiment_id: int, model: str) -> tuple[MonitorConfig, bool]:
    """The model's configuration in an experiment, and whether one was ever saved."""
    rows = om.catalog.tracking.events(experiment_id, event="monitor", key=model)
    if not rows:
        return MonitorConfig(), False
    return MonitorConfig.from_dict(orjson.loads(rows[-1][5]) or {}), True


def trackers(om: Omega, model: str) -> list[Tracker]:
    """Experiments tracking ``model`` in ``om``'s bucket, oldest first, with their configuration."""
    found = sorted(om.catalog.tracking.trackers(om.bucket, model))
    return [Tracker(eid, name, model, *config_of(om, eid, model)) for eid, name in found]


def tracker_for(
    om: Omega, model: str, *, experiment: str | None = None, reference: str | None = None
) -> Tracker:
    """The experiment whose predictions and configuration monitor ``model``.

    ``experiment`` names it; otherwise the oldest one that has a reference
    (or, when ``reference`` is given, the oldest one). NotFound when the model
    is not tracked (there, or at all).
    """
    if not om.models.exists(parse_reference(model).name):
        raise NotFound(f"model {model!r} does not exist in bucket {om.bucket!r}")
    found = trackers(om, model)
    if experiment is not None:
        found = [t for t in found if t.experiment == experiment]
    if not found:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise NotFound(
            f"model {model!r} is not tracked by {where} in bucket {om.bucket!r}, so its "
            "predictions are not logged; start with "
            f"om.runtime.experiment('prod').track({model!r}, reference='<training inputs>')"
        )
    if reference is None:
        for tracker in found:
            if tracker.config.reference:
                return tracker
    return found[0]


def save_config(om: Omega, experiment_id: int, model: str, config: MonitorConfig) -> None:
    """Log ``config`` as the model's newest ``monitor`` event in the experiment."""
    tracking = om.catalog.tracking
    run = tracking.latest_run(experiment_id) or tracking.start_run(experiment_id, "simple")
    value = config.to_dict(secrets=True)
    tracking.log([event_row(experiment_id, run, "monitor", model, value)])

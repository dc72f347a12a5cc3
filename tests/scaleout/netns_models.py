"""A model for the multi-host test that workers import (``scaleout.netns_models``)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class HostRecorder(RegressorMixin, BaseEstimator):
    """Predicts the mean of y; ``fit`` notes the host that ran it.

    Each fit appends its host name to ``marker``; the first one then waits
    ``delay`` seconds (time to cut its host off), a redelivered one does not.
    """

    def __init__(self, delay: float = 0.0, marker: str | None = None) -> None:
        self.delay = delay
        self.marker = marker

    def fit(self, X, y):  # noqa: N803
        host = socket.gethostname()
        first = True
        if self.marker is not None:
            marker = Path(self.marker)
            first = not marker.exists()
            with marker.open("a") as fh:
                fh.write(f"{host}\n")
        if first:
            time.sleep(self.delay)
        self.mean_ = float(np.mean(np.asarray(y, dtype=float)))
        self.fitted_on_ = host
        return self

    def predict(self, X):  # noqa: N803
        return np.full(len(X), getattr(self, "mean_", 0.0))

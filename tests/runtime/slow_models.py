"""Estimators for the runtime tests that workers can import (``runtime.slow_models``).

Stored models are loaded by class path, so a worker needs this module on its
path: the test fixtures start workers with ``PYTHONPATH`` set to ``tests/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class Sleepy(RegressorMixin, BaseEstimator):
    """Predicts the mean of y; ``fit`` and ``predict`` first wait up to ``delay`` seconds.

    With ``gate``, the wait ends as soon as that file exists: the test decides
    when the task may finish. With ``marker``, each run appends its process id
    to that file, and only the first run waits: a task that is redelivered
    after its worker died finishes at once, and the test sees from the file
    where each run was.
    """

    def __init__(
        self, delay: float = 0.0, marker: str | None = None, gate: str | None = None
    ) -> None:
        self.delay = delay
        self.marker = marker
        self.gate = gate

    def _pause(self) -> None:
        if self.marker is not None:
            marker = Path(self.marker)
            first = not marker.exists()
            with marker.open("a") as fh:
                fh.write(f"{os.getpid()}\n")
            if not first:
                return
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            if self.gate is not None and Path(self.gate).exists():
                return
            time.sleep(0.02)

    def fit(self, X, y):  # noqa: N803
        self._pause()
        self.mean_ = float(np.mean(np.asarray(y, dtype=float)))
        return self

    def predict(self, X):  # noqa: N803
        self._pause()
        return np.full(len(X), getattr(self, "mean_", 0.0))


def runs(marker: Path) -> list[int]:
    """The process ids that ran a Sleepy with this marker, in order."""
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []

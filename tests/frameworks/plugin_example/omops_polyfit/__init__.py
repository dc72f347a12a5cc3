"""An example omops plugin (docs/plugins.md): polynomial models fitted with NumPy.

``Polynomial(degree)`` fits ``y`` on one input column. The plugin stores its
coefficients as JSON (kind ``polyfit.model``), fits and predicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from omops.catalog import PartRecord
from omops.errors import InvalidData
from omops.plugins import ActionOutcome, Plugin, Stored

__all__ = ["PolyfitPlugin", "Polynomial"]


class Polynomial:
    """``y = c[0] * x**degree + ... + c[degree]``, fitted by least squares."""

    def __init__(self, degree: int = 1, coefficients: Sequence[float] | None = None) -> None:
        self.degree = degree
        self.coefficients = None if coefficients is None else np.asarray(coefficients, float)

    def fit(self, x: Any, y: Any) -> Polynomial:
        self.coefficients = np.polyfit(_column(x), np.asarray(y, float), self.degree)
        return self

    def predict(self, x: Any) -> np.ndarray:
        if self.coefficients is None:
            raise InvalidData("the polynomial is not fitted: fit it first")
        return np.polyval(self.coefficients, _column(x))


def _column(x: Any) -> np.ndarray:
    values = np.asarray(x, float)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InvalidData(f"a polynomial takes one input column, got shape {values.shape}")
    return values


class PolyfitPlugin(Plugin):
    kind = "polyfit.model"
    stores = ("models",)
    actions = frozenset({"fit", "predict"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        # no framework to import: the model class lives in this module
        return isinstance(obj, Polynomial)

    def put(self, obj: Any, blobs: Any, *, base: Any = None) -> Stored:
        coefficients = None if obj.coefficients is None else obj.coefficients.tolist()
        data = orjson.dumps({"degree": obj.degree, "coefficients": coefficients})
        part = PartRecord(blob=blobs.put_bytes(data), size=len(data))
        return Stored(parts=[part], kind_meta={"degree": obj.degree})

    def get(
        self, blobs: Any, parts: Sequence[PartRecord], kind_meta: Mapping[str, Any], *, query=None
    ) -> Polynomial:
        self._no_query(query)
        return Polynomial(**orjson.loads(blobs.read(self._single(parts, self.kind).blob)))

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"degree": kind_meta["degree"]}

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        if action == "fit":
            return ActionOutcome(model=obj.fit(X, y))
        if action == "predict":
            return ActionOutcome(result=obj.predict(X))
        raise InvalidData(f"kind {self.kind!r} has no action {action!r}")

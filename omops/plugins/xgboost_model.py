"""``xgboost.model``: XGBoost Boosters and scikit-learn-API models, in XGBoost's own format.

A model is stored as UBJSON (``Booster.save_raw('ubj')``), never pickled; a
scikit-learn-API model (``XGBClassifier``, ``XGBRegressor`` ...) also keeps its
class and the parameters that differ from the defaults (as JSON), so it comes
back the same and can be fitted again. An unfitted one keeps only those.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins._frameworks import (
    check_action,
    describe_model,
    framework,
    import_object,
    non_default_params,
)
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["XGBoostPlugin"]

KIND = "xgboost.model"


def _xgboost() -> Any:
    return framework(KIND, "xgboost", extra="xgboost", what="XGBoost")


class XGBoostPlugin(Plugin):
    """``xgboost.Booster`` and ``xgboost.XGBModel`` subclasses (fitted or not).

    ``kind_meta``: ``form`` (``booster`` or ``sklearn``), ``estimator`` (the
    class), ``params``, ``fitted``, ``format`` (``ubj``), ``feature_names`` and
    ``n_features`` when known, ``xgboost_version``.
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"fit", "predict", "predict_proba", "score"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        xgb = sys.modules.get("xgboost")
        return xgb is not None and isinstance(obj, (xgb.Booster, xgb.XGBModel))

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        xgb = _xgboost()
        meta: dict[str, Any] = {"xgboost_version": xgb.__version__, "format": "ubj"}
        if isinstance(obj, xgb.Booster):
            meta.update(form="booster", fitted=True)
            booster = obj
        elif isinstance(obj, xgb.XGBModel):
            meta.update(
                form="sklearn",
                estimator=f"{type(obj).__module__}:{type(obj).__qualname__}",
                params=non_default_params(obj, KIND),
                fitted=obj.__sklearn_is_fitted__(),
            )
            booster = obj.get_booster() if meta["fitted"] else None
        else:
            raise InvalidData(
                f"kind {KIND!r} stores an xgboost Booster or XGBModel, got {type(obj).__name__}"
            )
        if booster is None:
            data = orjson.dumps(meta["params"])
        else:
            data = bytes(booster.save_raw("ubj"))
            names = booster.feature_names
            if names:
                meta["feature_names"] = [str(n) for n in names]
            meta["n_features"] = int(booster.num_features())
        return Stored(
            parts=[PartRecord(blob=blobs.put_bytes(data), size=len(data))], kind_meta=meta
        )

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        xgb = _xgboost()
        self._no_query(query)
        data = blobs.read(self._single(parts, self.kind).blob)
        if kind_meta.get("form") == "booster":
            booster = xgb.Booster()
            booster.load_model(bytearray(data))
            return booster
        cls = import_object(kind_meta["estimator"], "the estimator class")
        if not (isinstance(cls, type) and issubclass(cls, xgb.XGBModel)):
            raise InvalidData(f"{kind_meta['estimator']} is not an xgboost XGBModel class")
        model = cls(**kind_meta.get("params", {}))
        if kind_meta.get("fitted"):
            model.load_model(bytearray(data))
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("form", "estimator", "feature_names", "n_features"))

    def takes_arrays(self, obj: Any) -> bool:
        """True unless the model has categorical features (an array cannot carry categories)."""
        xgb = sys.modules.get("xgboost")
        if xgb is None:
            return False
        if isinstance(obj, xgb.XGBModel) and not obj.__sklearn_is_fitted__():
            return False  # the usual path says it is not fitted
        booster = obj if isinstance(obj, xgb.Booster) else obj.get_booster()
        return "c" not in (booster.feature_types or [])

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """Predictions from ``Booster.inplace_predict`` (the lane checks they equal the usual ones).

        The scikit-learn API's ``predict`` adds ~0.5 ms of checks per call.
        """
        xgb = sys.modules["xgboost"]
        if isinstance(obj, xgb.Booster) or action not in ("predict", "predict_proba"):
            return self.perform(obj, action, X, None)
        classifier = isinstance(obj, xgb.XGBClassifier)
        if action == "predict_proba" and not classifier:
            return self.perform(obj, action, X, None)
        output = obj.get_booster().inplace_predict(
            X, iteration_range=obj._get_iteration_range(None)
        )
        if not classifier:
            return ActionOutcome(result=output)
        if output.ndim == 1:  # binary: the positive class
            if action == "predict_proba":
                return ActionOutcome(result=np.vstack((1.0 - output, output)).transpose())
            return ActionOutcome(result=(output > 0.5).astype(np.int64))
        if action == "predict_proba":
            return ActionOutcome(result=output)
        return ActionOutcome(result=np.argmax(output, axis=1))

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        xgb = _xgboost()
        check_action(KIND, self.actions, action)
        if isinstance(obj, xgb.Booster):
            if action != "predict":
                raise InvalidData(
                    f"an xgboost Booster has no {action!r}; store the scikit-learn API model "
                    "(XGBClassifier, XGBRegressor ...) to fit or score it"
                )
            return ActionOutcome(result=obj.inplace_predict(X, **kwargs))
        method = getattr(obj, action, None)
        if method is None:
            raise InvalidData(f"{type(obj).__name__} has no method {action!r}")
        if action == "fit":
            kwargs.setdefault("verbose", False)
            method(X, y, **kwargs)
            return ActionOutcome(model=obj)
        if action == "score":
            return ActionOutcome(result=float(method(X, y, **kwargs)))
        return ActionOutcome(result=method(X, **kwargs))

"""``lightgbm.model``: LightGBM Boosters and scikit-learn-API models, in LightGBM's text format.

A model is stored as LightGBM's model text (``Booster.model_to_string()``),
never pickled. A scikit-learn-API model (``LGBMClassifier``, ``LGBMRegressor``
...) also keeps its class, the parameters that differ from the defaults and
what ``fit`` learnt besides the trees (classes, objective, feature count), all
as JSON, so it comes back predicting the same and can be fitted again.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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

__all__ = ["LightGBMPlugin"]

KIND = "lightgbm.model"
#: Up to this many rows the array lane predicts in one thread: an OpenMP team
#: per request costs more than it saves in a server that answers requests in
#: several threads (its threads spin for the cores the server needs).
SMALL_ROWS = 10_000


def _lightgbm() -> Any:
    return framework(KIND, "lightgbm", extra="lightgbm", what="LightGBM")


class LightGBMPlugin(Plugin):
    """``lightgbm.Booster`` and ``lightgbm.LGBMModel`` subclasses (fitted or not).

    ``kind_meta``: ``form`` (``booster`` or ``sklearn``), ``estimator``,
    ``params``, ``fitted``, ``state`` (what fit learnt besides the trees),
    ``format`` (``text``), ``feature_names``, ``n_features``, ``lightgbm_version``.
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"fit", "predict", "predict_proba", "score"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        lgb = sys.modules.get("lightgbm")
        return lgb is not None and isinstance(obj, (lgb.Booster, lgb.LGBMModel))

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        lgb = _lightgbm()
        meta: dict[str, Any] = {"lightgbm_version": lgb.__version__, "format": "text"}
        if isinstance(obj, lgb.Booster):
            meta.update(form="booster", fitted=True)
            booster = obj
        elif isinstance(obj, lgb.LGBMModel):
            meta.update(
                form="sklearn",
                estimator=f"{type(obj).__module__}:{type(obj).__qualname__}",
                params=non_default_params(obj, KIND),
                fitted=obj.__sklearn_is_fitted__(),
            )
            booster = obj.booster_ if meta["fitted"] else None
            if booster is not None:
                meta["state"] = _fitted_state(obj)
        else:
            raise InvalidData(
                f"kind {KIND!r} stores a lightgbm Booster or LGBMModel, got {type(obj).__name__}"
            )
        if booster is None:
            data = orjson.dumps(meta["params"])
        else:
            data = booster.model_to_string().encode()
            names = booster.feature_name()
            state = meta.get("state") or {}
            if _named(names) and state.get("fitted_with_feature_names", True):
                meta["feature_names"] = [str(n) for n in names]
            meta["n_features"] = int(booster.num_feature())
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
        lgb = _lightgbm()
        self._no_query(query)
        data = blobs.read(self._single(parts, self.kind).blob)
        if kind_meta.get("form") == "booster":
            return lgb.Booster(model_str=data.decode())
        cls = import_object(kind_meta["estimator"], "the estimator class")
        if not (isinstance(cls, type) and issubclass(cls, lgb.LGBMModel)):
            raise InvalidData(f"{kind_meta['estimator']} is not a lightgbm LGBMModel class")
        model = cls(**kind_meta.get("params", {}))
        if kind_meta.get("fitted"):
            _restore(model, lgb.Booster(model_str=data.decode()), kind_meta["state"])
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("form", "estimator", "feature_names", "n_features"))

    def takes_arrays(self, obj: Any) -> bool:
        """True: trees read numbers by position (categorical columns never reach the lane)."""
        return True

    def array_view(self, obj: Any) -> Any:
        """A scikit-learn-API model that does not know its column names (sharing its trees).

        LightGBM warns "X does not have valid feature names" when a model fitted
        on a DataFrame is given an array; the lane sends one on purpose.
        """
        lgb = sys.modules.get("lightgbm")
        if lgb is None or not isinstance(obj, lgb.LGBMModel):
            return obj
        view = copy.copy(obj)
        view._fitted_with_feature_names = False
        return view

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """Predictions straight from the Booster (the lane checks they equal the usual ones).

        The scikit-learn API validates its input on every call (~0.7 ms for one
        row); the Booster answers in microseconds, in one thread for small inputs.
        """
        with _input_errors():
            return self._array_outcome(obj, action, X)

    def _array_outcome(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        lgb = sys.modules["lightgbm"]
        booster = obj if isinstance(obj, lgb.Booster) else obj.booster_
        threads = {"num_threads": 1} if len(X) <= SMALL_ROWS else {}
        if isinstance(obj, lgb.Booster) or not isinstance(obj, lgb.LGBMClassifier):
            if action != "predict":
                return self.perform(obj, action, X, None)
            return ActionOutcome(result=booster.predict(X, **threads))
        if callable(obj._objective) or action not in ("predict", "predict_proba"):
            return self.perform(obj, action, X, None)
        proba = booster.predict(X, **threads)
        if proba.ndim == 1:  # binary: the positive class
            proba = np.vstack((1.0 - proba, proba)).transpose()
        if action == "predict_proba":
            return ActionOutcome(result=proba)
        # what LabelEncoder.inverse_transform returns, without its checks (~0.25 ms)
        return ActionOutcome(result=obj._le.classes_[np.argmax(proba, axis=1)])

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        lgb = _lightgbm()
        check_action(KIND, self.actions, action)
        if isinstance(X, np.ndarray) and action != "fit":
            obj = self.array_view(obj)  # an array on purpose: no "no feature names" warning
        with _input_errors():
            return self._outcome(lgb, obj, action, X, y, **kwargs)

    def _outcome(
        self, lgb: Any, obj: Any, action: str, X: Any, y: Any, **kwargs: Any
    ) -> ActionOutcome:  # noqa: N803
        if isinstance(obj, lgb.Booster):
            if action != "predict":
                raise InvalidData(
                    f"a lightgbm Booster has no {action!r}; store the scikit-learn API model "
                    "(LGBMClassifier, LGBMRegressor ...) to fit or score it"
                )
            return ActionOutcome(result=obj.predict(X, **kwargs))
        method = getattr(obj, action, None)
        if method is None:
            raise InvalidData(f"{type(obj).__name__} has no method {action!r}")
        if action == "fit":
            method(X, y, **kwargs)
            return ActionOutcome(model=obj)
        if action == "score":
            return ActionOutcome(result=float(method(X, y, **kwargs)))
        return ActionOutcome(result=method(X, **kwargs))


@contextmanager
def _input_errors() -> Iterator[None]:
    """LightGBM's own errors about an input (``LightGBMError`` is no ValueError) as InvalidData."""
    lgb = sys.modules["lightgbm"]
    try:
        yield
    except lgb.basic.LightGBMError as exc:
        raise InvalidData(f"LightGBM could not use this input: {exc}") from None


def _named(names: Sequence[str]) -> bool:
    """Whether LightGBM's feature names are real ones, not its ``Column_0``... defaults."""
    return bool(names) and any(n != f"Column_{i}" for i, n in enumerate(names))


def _fitted_state(model: Any) -> dict[str, Any]:
    """What LightGBM's ``fit`` sets besides the Booster, as JSON."""
    objective = model._objective
    if callable(objective):
        raise InvalidData(
            f"kind {KIND!r} cannot store a model with a custom objective function "
            "(it would need pickle); store model.booster_ instead"
        )
    state: dict[str, Any] = {
        "objective": objective,
        "n_features": int(model._n_features),
        "n_features_in": int(model._n_features_in),
        "fitted_with_feature_names": bool(model._fitted_with_feature_names),
        "best_iteration": int(model._best_iteration),
    }
    classes = getattr(model, "_classes", None)
    if classes is not None:
        state["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
    return state


def _restore(model: Any, booster: Any, state: Mapping[str, Any]) -> None:
    """Set what ``fit`` would have set, from :func:`_fitted_state` and the Booster."""
    import numpy as np

    model._Booster = booster
    model._objective = state["objective"]
    model._n_features = state["n_features"]
    model._n_features_in = state["n_features_in"]
    model._fitted_with_feature_names = state["fitted_with_feature_names"]
    model._best_iteration = state["best_iteration"]
    model._best_score = {}
    model._evals_result = {}
    if "classes" in state:
        from lightgbm.compat import _LGBMLabelEncoder

        classes = np.asarray(state["classes"])
        model._le = _LGBMLabelEncoder().fit(classes)
        model._classes = model._le.classes_
        model._n_classes = len(model._classes)
        model._class_map = dict(
            zip(model._le.classes_, model._le.transform(model._le.classes_), strict=True)
        )
        if isinstance(model.class_weight, dict):
            model._class_weight = {model._class_map[k]: v for k, v in model.class_weight.items()}
        else:
            model._class_weight = model.class_weight
    model.fitted_ = True

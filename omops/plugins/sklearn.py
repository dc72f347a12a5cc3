"""``sklearn.joblib``: scikit-learn estimators and pipelines, stored with joblib."""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["SklearnPlugin"]

_FITTING = frozenset({"fit", "partial_fit"})
_APPLYING = frozenset({"predict", "predict_proba", "decision_function", "transform"})


def _import_joblib():  # noqa: ANN202
    try:
        import joblib
        import sklearn
    except ImportError:
        raise PluginError(
            "kind 'sklearn.joblib' needs scikit-learn: pip install 'omops[sklearn]'"
        ) from None
    return joblib, sklearn


class SklearnPlugin(Plugin):
    """Any scikit-learn estimator or pipeline, fitted or not.

    ``kind_meta`` records the estimator class, scikit-learn's version and, when
    the model was fitted on a DataFrame, its input columns.
    """

    kind = "sklearn.joblib"
    stores = ("models",)

    @classmethod
    def supports(cls, obj: Any) -> bool:
        base = sys.modules.get("sklearn.base")
        return base is not None and isinstance(obj, base.BaseEstimator)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        joblib, sklearn = _import_joblib()
        if not isinstance(obj, sklearn.base.BaseEstimator):
            raise InvalidData(
                f"kind 'sklearn.joblib' needs a scikit-learn estimator, got {type(obj).__name__}"
            )
        key, size = blobs.put_with(lambda out: joblib.dump(obj, out))
        meta: dict[str, Any] = {
            "estimator": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "sklearn_version": sklearn.__version__,
        }
        features = getattr(obj, "feature_names_in_", None)
        if features is not None:
            meta["feature_names"] = [str(f) for f in features]
        n_features = getattr(obj, "n_features_in_", None)
        if n_features is not None:
            meta["n_features"] = int(n_features)
        return Stored(parts=[PartRecord(blob=key, size=size)], kind_meta=meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        joblib, _ = _import_joblib()
        self._no_query(query)
        with blobs.open(self._single(parts, self.kind).blob) as fh:
            return joblib.load(fh)

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: kind_meta[k] for k in ("estimator", "feature_names", "n_features") if k in kind_meta
        }

    actions = frozenset({*_FITTING, *_APPLYING, "fit_transform", "score", "gridsearch"})

    def takes_arrays(self, obj: Any) -> bool:
        """True for scikit-learn's own estimators that never select columns by name.

        ColumnTransformer, FunctionTransformer (user code may index a
        DataFrame), pandas/polars output and estimators from other packages
        are excluded, anywhere in a pipeline or meta-estimator.
        """
        return _array_safe(obj)

    def array_view(self, obj: Any) -> Any:
        """``obj`` without its fitted column names, sharing everything else.

        scikit-learn warns "X does not have valid feature names" when a model
        fitted on a DataFrame is given an array; the lane sends it the array on
        purpose (columns in the fitted order), so it calls a shallow copy that
        does not know the names. Fitted arrays (coefficients, trees) are shared.
        """
        return _unnamed(obj, 0)

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        """Run a scikit-learn verb; fitting verbs return the changed model."""
        if action not in self.actions:
            raise InvalidData(f"action {action!r} is not one of {', '.join(sorted(self.actions))}")
        if action == "gridsearch":
            return self._gridsearch(obj, X, y, **kwargs)
        method = getattr(obj, action, None)
        if method is None:
            raise InvalidData(f"{type(obj).__name__} has no method {action!r}")
        if action in _FITTING:
            method(X, y, **kwargs) if y is not None else method(X, **kwargs)
            return ActionOutcome(result=None, model=obj)
        if action == "fit_transform":
            result = method(X, y, **kwargs) if y is not None else method(X, **kwargs)
            return ActionOutcome(result=result, model=obj)
        if action == "score":
            return ActionOutcome(result=float(method(X, y, **kwargs)))
        return ActionOutcome(result=method(X, **kwargs))

    def _gridsearch(
        self,
        obj: Any,
        X: Any,
        y: Any,
        *,
        parameters: Any = None,  # noqa: N803
        **kwargs: Any,
    ) -> ActionOutcome:
        import pandas as pd
        from sklearn.model_selection import GridSearchCV

        if not parameters:
            raise InvalidData("gridsearch needs parameters={'param': [values, ...]}")
        search = GridSearchCV(obj, parameters, **kwargs).fit(X, y)
        results = pd.DataFrame(search.cv_results_)
        # 'params' holds dicts: keep them as JSON text, one Arrow type per column.
        results["params"] = [repr(p) for p in results["params"]]
        for column in results.columns:
            if results[column].dtype == object:
                results[column] = results[column].astype(str)
        summary = {
            "best_params": {k: _plain(v) for k, v in search.best_params_.items()},
            "best_score": float(search.best_score_),
        }
        return ActionOutcome(
            result=summary,
            model=search.best_estimator_,
            models={"gridsearch": search},
            datasets={"gridsearch": results},
        )


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value


#: Estimators that look at column names or run user code on the input.
_NAME_AWARE = frozenset({"ColumnTransformer", "FunctionTransformer"})
_MAX_DEPTH = 20


def _array_safe(obj: Any) -> bool:
    """Whether every estimator in ``obj`` is a plain scikit-learn one that reads arrays.

    Walks parameters and fitted attributes (pipeline steps, ``estimators_``,
    ``best_estimator_`` ...). When the model as a whole was fitted without
    column names, none inside may know names either: it would check a
    DataFrame's column order, which an array cannot show.
    """
    named: list[bool] = []
    if not _walk(obj, 0, set(), named):
        return False
    return getattr(obj, "feature_names_in_", None) is not None or not any(named[1:])


def _walk(obj: Any, depth: int, seen: set[int], named: list[bool]) -> bool:
    if obj is None or isinstance(obj, (str, int, float, bool)) or id(obj) in seen:
        return True
    if depth > _MAX_DEPTH:
        return False
    if isinstance(obj, (list, tuple)):
        return all(_walk(item, depth + 1, seen, named) for item in obj)
    if isinstance(obj, dict):
        return all(_walk(item, depth + 1, seen, named) for item in obj.values())
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(obj, base.BaseEstimator):
        return not callable(getattr(obj, "fit", None))  # data, functions: not an estimator
    seen.add(id(obj))
    cls = type(obj)
    if not cls.__module__.startswith("sklearn.") or cls.__name__ in _NAME_AWARE:
        return False
    output = getattr(obj, "_sklearn_output_config", None) or {}
    if output.get("transform", "default") != "default":
        return False
    named.append(getattr(obj, "feature_names_in_", None) is not None)
    return all(
        _walk(value, depth + 1, seen, named)
        for key, value in vars(obj).items()
        if key != "_sklearn_output_config"
    )


def _unnamed(obj: Any, depth: int) -> Any:
    """``obj`` with ``feature_names_in_`` removed from every estimator in it (shallow copies)."""
    if depth > _MAX_DEPTH:
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_unnamed(item, depth + 1) for item in obj]
        if all(new is old for new, old in zip(items, obj, strict=True)):
            return obj
        return type(obj)(items) if type(obj) in (list, tuple) else obj
    if isinstance(obj, dict):
        changed = {k: v for k, v in ((k, _unnamed(v, depth + 1)) for k, v in obj.items())}
        if all(changed[k] is obj[k] for k in obj):
            return obj
        copied = copy.copy(obj)  # keeps dict subclasses such as Bunch
        copied.update(changed)
        return copied
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(obj, base.BaseEstimator):
        return obj
    state = vars(obj)
    changed = {k: new for k, v in state.items() if (new := _unnamed(v, depth + 1)) is not v}
    if "feature_names_in_" not in state and not changed:
        return obj
    view = copy.copy(obj)
    vars(view).update(changed)
    vars(view).pop("feature_names_in_", None)
    return view

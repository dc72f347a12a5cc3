"""``sklearn.joblib``: scikit-learn estimators and pipelines, stored with joblib."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins.base import Plugin, ReadQuery, Stored

__all__ = ["SklearnPlugin"]


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

    def get(self, blobs: Blobs, parts: Sequence[PartRecord], kind_meta: Mapping[str, Any], *,
            query: ReadQuery | None = None) -> Any:
        joblib, _ = _import_joblib()
        self._no_query(query)
        with blobs.open(self._single(parts, self.kind).blob) as fh:
            return joblib.load(fh)

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {k: kind_meta[k] for k in ("estimator", "feature_names", "n_features") if k in kind_meta}

"""``xgboost.model``: scikit-learn-API models and Boosters, in XGBoost's own format."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import xgboost as xgb

from omops.errors import InvalidData
from omops.plugins import default_registry
from omops.runtime.actions import perform

from .conftest import xy
from .contract import TIMEOUT, ModelContract


@functools.cache
def classifier(seed: int = 0) -> xgb.XGBClassifier:
    X, y = xy(seed=seed)  # noqa: N806
    return xgb.XGBClassifier(n_estimators=4 + seed, max_depth=2, n_jobs=1).fit(X, y)


class TestXGBClassifier(ModelContract):
    kind = "xgboost.model"
    extra = "xgboost"
    modules = ("xgboost",)
    fits = True

    def make(self, seed=0):
        return classifier(seed)

    def expected(self, model, X):  # noqa: N803
        return model.predict(X)

    def assert_same(self, got, want):
        super().assert_same(got, want)
        X, _ = xy(seed=3)  # noqa: N806
        np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X))
        assert got.get_params()["n_estimators"] == want.get_params()["n_estimators"]

    def test_stored_natively_not_pickled(self, om):
        meta = om.models.put(self.make(), "model")
        assert meta.kind_meta["format"] == "ubj"
        assert meta.kind_meta["estimator"] == "xgboost.sklearn:XGBClassifier"
        blob = om.blobs.read(
            om.catalog.parts(om.catalog.lookup(om.bucket, "models", "model"))[0].blob
        )
        assert blob[:1] == b"{" and b"learner" in blob  # UBJSON, not a pickle stream

    def test_precedes_sklearn(self):
        # an XGBClassifier is a scikit-learn estimator too: it must get its own kind
        from sklearn.base import BaseEstimator

        assert isinstance(self.make(), BaseEstimator)
        order = default_registry().order
        assert order.index("xgboost.model") < order.index("sklearn.joblib")

    def test_fit_and_score_make_new_revisions(self, runtime_om):
        om, runtime = runtime_om
        X, y = xy(n=80, seed=2)  # noqa: N806
        om.datasets.put(X.assign(y=y), "train", append=False)
        unfitted = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)
        first = om.models.put(unfitted, "model").revision
        assert om.models.get("model").get_params()["n_estimators"] == 3
        summary = runtime.model("model").fit("train[a,b,c]", "train[y]").get(timeout=TIMEOUT)
        assert [r for r, _ in om.models.revisions("model")] == [first, summary["revision"]]
        want = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y)
        got = om.models.get("model")
        np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X), rtol=1e-6)
        assert om.models.metadata("model").kind_meta["feature_names"] == ["a", "b", "c"]
        score = runtime.model("model").score("train[a,b,c]", "train[y]").get(timeout=TIMEOUT)
        assert score == pytest.approx(want.score(X, y))
        proba = runtime.model("model").predict_proba("train[a,b,c]").get(timeout=TIMEOUT)
        np.testing.assert_allclose(proba, want.predict_proba(X), rtol=1e-5)


class TestXGBBooster(ModelContract):
    kind = "xgboost.model"
    extra = "xgboost"
    modules = ("xgboost",)

    def make(self, seed=0):
        return classifier(seed).get_booster()

    def expected(self, model, X):  # noqa: N803
        return model.inplace_predict(X)

    def test_a_booster_only_predicts(self, om):
        om.models.put(self.make(), "model")
        X, y = xy()  # noqa: N806
        with pytest.raises(InvalidData, match="Booster has no 'fit'"):
            perform(om, "model", "fit", X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_array_lane_answers_exactly_as_the_model(n_classes):
    """inplace_predict gives what XGBClassifier.predict/predict_proba give."""
    from omops.plugins.xgboost_model import XGBoostPlugin
    from omops.runtime._arrays import _same

    X, _ = xy(n=90)  # noqa: N806
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)
    model.fit(X, np.arange(90) % n_classes)
    plugin = XGBoostPlugin()
    for action in ("predict", "predict_proba"):
        usual = plugin.perform(model, action, X, None).result
        assert _same(plugin.perform_array(model, action, X.to_numpy()).result, usual)
    regressor = xgb.XGBRegressor(n_estimators=3, n_jobs=1).fit(X, X["a"])
    assert _same(
        plugin.perform_array(regressor, "predict", X.to_numpy()).result, regressor.predict(X)
    )


def test_an_unfitted_model_answers_400_over_rest(om, served):
    import httpx

    om.models.put(xgb.XGBRegressor(n_estimators=2), "model")
    X, _ = xy(n=3)  # noqa: N806
    body = {"columns": list(X.columns), "data": X.to_numpy().tolist()}
    with httpx.Client(
        base_url=served.url, headers={"Omops-Bucket": om.bucket}, timeout=TIMEOUT
    ) as http:
        answer = http.post("/api/v1/model/model/predict", json=body)
    assert answer.status_code == 400, answer.text
    assert "fit" in answer.json()["message"]

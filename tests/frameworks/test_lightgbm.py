"""``lightgbm.model``: scikit-learn-API models and Boosters, in LightGBM's text format."""

from __future__ import annotations

import functools

import lightgbm as lgb
import numpy as np
import pytest

from omops.errors import InvalidData
from omops.plugins import default_registry
from omops.runtime.actions import perform

from .conftest import xy
from .contract import TIMEOUT, ModelContract


def params(seed: int = 0) -> dict:
    return {"n_estimators": 4 + seed, "num_leaves": 4, "min_child_samples": 5, "verbose": -1}


@functools.cache
def classifier(seed: int = 0) -> lgb.LGBMClassifier:
    X, y = xy(seed=seed)  # noqa: N806
    labels = np.where(y == 1, "up", "down")  # string classes come back as they were
    return lgb.LGBMClassifier(**params(seed), n_jobs=1).fit(X, labels)


class TestLGBMClassifier(ModelContract):
    kind = "lightgbm.model"
    extra = "lightgbm"
    modules = ("lightgbm",)
    fits = True

    def make(self, seed=0):
        return classifier(seed)

    def expected(self, model, X):  # noqa: N803
        return model.predict(X)

    def assert_same(self, got, want):
        super().assert_same(got, want)
        X, _ = xy(seed=3)  # noqa: N806
        np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X))
        assert list(got.classes_) == ["down", "up"]
        assert got.get_params() == want.get_params()

    def test_stored_as_model_text(self, om):
        meta = om.models.put(self.make(), "model")
        assert meta.kind_meta["format"] == "text"
        part = om.catalog.parts(om.catalog.lookup(om.bucket, "models", "model"))[0]
        assert om.blobs.read(part.blob).startswith(b"tree\nversion=")

    def test_precedes_sklearn(self):
        order = default_registry().order
        assert order.index("lightgbm.model") < order.index("sklearn.joblib")

    def test_fit_score_and_proba(self, runtime_om):
        om, runtime = runtime_om
        X, y = xy(n=80, seed=2)  # noqa: N806
        om.datasets.put(X.assign(y=y), "train", append=False)
        first = om.models.put(lgb.LGBMClassifier(**params(), n_jobs=1), "model").revision
        summary = runtime.model("model").fit("train[a,b,c]", "train[y]").get(timeout=TIMEOUT)
        assert [r for r, _ in om.models.revisions("model")] == [first, summary["revision"]]
        want = lgb.LGBMClassifier(**params(), n_jobs=1).fit(X, y)
        proba = runtime.model("model").predict_proba("train[a,b,c]").get(timeout=TIMEOUT)
        np.testing.assert_allclose(proba, want.predict_proba(X), rtol=1e-6)
        score = runtime.model("model").score("train[a,b,c]", "train[y]").get(timeout=TIMEOUT)
        assert score == pytest.approx(want.score(X, y))


class TestLGBMBooster(ModelContract):
    kind = "lightgbm.model"
    extra = "lightgbm"
    modules = ("lightgbm",)

    def make(self, seed=0):
        X, _ = xy(seed=seed)  # noqa: N806
        regressor = lgb.LGBMRegressor(**params(seed), n_jobs=1).fit(X, X["a"] * 2 + X["c"])
        return regressor.booster_

    def expected(self, model, X):  # noqa: N803
        return model.predict(X)

    def test_a_booster_only_predicts(self, om):
        om.models.put(self.make(), "model")
        X, y = xy()  # noqa: N806
        with pytest.raises(InvalidData, match="Booster has no 'score'"):
            perform(om, "model", "score", X, y)


@pytest.mark.parametrize("classes", [["down", "up"], [0, 1, 2]], ids=["binary", "multiclass"])
def test_the_array_lane_answers_exactly_as_the_model(classes):
    """The Booster fast path gives what LGBMClassifier.predict/predict_proba give."""
    from omops.plugins.lightgbm_model import LightGBMPlugin
    from omops.runtime._arrays import _same

    X, _ = xy(n=90)  # noqa: N806
    labels = np.asarray(classes, dtype=object if isinstance(classes[0], str) else None)
    model = lgb.LGBMClassifier(**params(), n_jobs=1).fit(X, labels[np.arange(90) % len(labels)])
    plugin = LightGBMPlugin()
    view = plugin.array_view(model)
    for action in ("predict", "predict_proba"):
        usual = plugin.perform(model, action, X, None).result
        assert _same(plugin.perform_array(view, action, X.to_numpy()).result, usual)
    regressor = lgb.LGBMRegressor(**params(), n_jobs=1).fit(X, X["a"])
    assert _same(
        plugin.perform_array(plugin.array_view(regressor), "predict", X.to_numpy()).result,
        regressor.predict(X),
    )

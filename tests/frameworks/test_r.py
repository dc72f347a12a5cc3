"""``r.model``: R models through rpy2 (R and randomForest from Debian), stored with saveRDS."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from omops.errors import InvalidData, PluginError
from omops.plugins.r_model import R_LOCK, _r_frame, _robjects
from omops.runtime.actions import perform
from omops.runtime.inputs import JsonBody

from .conftest import COLUMNS, spy_lane, xy
from .contract import TIMEOUT, ModelContract

# through the plugin: it keeps rpy2's LD_LIBRARY_PATH from the workers and servers started later
ro = _robjects()


@functools.cache
def forest(seed: int = 0):
    """A randomForest classifier of y (a factor) on a, b, c, fitted in R."""
    X, y = xy(seed=seed)  # noqa: N806
    with R_LOCK:
        ro.r("suppressPackageStartupMessages(library(randomForest))")
        ro.r["set.seed"](seed)
        data = _r_frame(ro, X.assign(y=y), factors={"y"})
        return ro.r["randomForest"](ro.Formula("y ~ a + b + c"), data=data, ntree=15 + 2 * seed)


def r_predict(model, X, **kwargs):  # noqa: N803
    with R_LOCK:
        result = ro.r["predict"](model, newdata=_r_frame(ro, X), **kwargs)
        if isinstance(result, ro.FactorVector):
            levels = list(ro.r["levels"](result))
            return np.array([levels[i - 1] for i in np.asarray(result)], dtype=object)
        return np.asarray(result)


class TestRandomForest(ModelContract):
    kind = "r.model"
    extra = "r"
    modules = ("rpy2",)
    fits = True

    def make(self, seed=0):
        return forest(seed)

    def expected(self, model, X):  # noqa: N803
        return r_predict(model, X)

    def test_kind_meta_names_class_packages_and_columns(self, om):
        meta = om.models.put(self.make(), "model")
        assert meta.kind_meta["r_class"] == ["randomForest.formula", "randomForest"]
        assert meta.kind_meta["r_packages"] == ["randomForest"]
        assert meta.kind_meta["response"] == "y"
        assert meta.details["feature_names"] == COLUMNS

    def test_predict_proba_over_the_runtime(self, runtime_om):
        om, runtime = runtime_om
        X, _ = xy(seed=6)  # noqa: N806
        om.datasets.put(X, "inputs", append=False)
        om.models.put(self.make(), "model")
        got = runtime.model("model").predict_proba("inputs").get(timeout=TIMEOUT)
        want = np.asarray(r_predict(self.make(), X, type="prob")).reshape((len(X), 2), order="F")
        np.testing.assert_allclose(got, want)

    def test_fit_refits_the_formula_on_new_data(self, runtime_om):
        om, runtime = runtime_om
        X, _ = xy(n=50, seed=8)  # noqa: N806
        X["target"] = 2.0 * X["a"] - X["b"] + 1.0
        om.datasets.put(X, "train", append=False)
        with R_LOCK:
            linear = ro.r["lm"](ro.Formula("target ~ a + b"), data=_r_frame(ro, X.iloc[:5] * 0 + 1))
        first = om.models.put(linear, "model").revision
        summary = runtime.model("model").fit("train[a,b]", "train[target]").get(timeout=TIMEOUT)
        assert [r for r, _ in om.models.revisions("model")] == [first, summary["revision"]]
        got = runtime.model("model").predict("train[a,b]").get(timeout=TIMEOUT)
        np.testing.assert_allclose(got, X["target"], atol=1e-9)

    def test_r_errors_are_invalid_data(self, om):
        X, _ = xy()  # noqa: N806
        with R_LOCK:
            linear = ro.r["lm"](ro.Formula("a ~ b"), data=_r_frame(ro, X))
        om.models.put(linear, "model")
        with pytest.raises(InvalidData, match="R could not predict_proba this input"):
            perform(om, "model", "predict_proba", X)


def test_missing_r_package_names_the_debian_package(om):
    with R_LOCK:
        model = ro.r("structure(list(), class = 'omopsNoSuchModel')")
    meta = om.models.put(model, "model")
    stored = om.catalog.lookup(om.bucket, "models", "model")
    plugin = om.plugins.get("r.model")
    kind_meta = {**meta.kind_meta, "r_packages": ["omopsNoSuchPkg"]}
    with pytest.raises(PluginError, match="apt-get install r-cran-omopsnosuchpkg"):
        plugin.get(om.blobs, om.catalog.parts(stored), kind_meta)


def test_starting_r_leaves_the_library_path_alone():
    code = (
        "import os; from omops.plugins.r_model import _robjects; _robjects(); "
        "print(os.environ.get('LD_LIBRARY_PATH'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "None", done.stderr


def test_missing_r_names_what_to_install(tmp_path):
    """Without R, the plugin says to install R (rpy2 itself is there)."""
    code = (
        "from omops.plugins.r_model import _robjects\n"
        "try:\n    _robjects()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "R_HOME": str(tmp_path / "no-r"), "PATH": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "PluginError" in done.stdout, done.stdout + done.stderr
    assert "apt-get install r-base-core" in done.stdout


# -- the array lane: R's own answers, without pandas or rpy2's conversions ------------------


def r_proba(model, X):  # noqa: N803
    return np.asarray(r_predict(model, X, type="prob")).reshape((len(X), 2), order="F")


@pytest.fixture
def laned(monkeypatch):
    """The actions the R plugin's array lane performed."""
    from omops.plugins.r_model import RPlugin

    return spy_lane(monkeypatch, RPlugin)


@pytest.mark.parametrize("rows", [1, 25])
def test_the_array_lane_answers_exactly_as_r(om, laned, rows):
    """Labels and class probabilities, float and integer columns, columns in any order."""
    model = forest()
    om.models.put(model, "model")
    X, _ = xy(n=rows, seed=5)  # noqa: N806
    inputs = [X, (X * 3).round().astype("int64")]
    for frame in inputs:
        expected = {"predict": r_predict(model, frame), "predict_proba": r_proba(model, frame)}
        shuffled = frame[["c", "a", "b"]]  # aligned by name, on the lane as elsewhere
        body = JsonBody({"columns": list(shuffled.columns), "data": shuffled.values.tolist()})
        for action, want in expected.items():
            for _ in range(3):  # the first answer is checked against the usual path's
                got = perform(om, "model", action, body).result
                assert got.dtype == want.dtype and got.shape == want.shape
                if want.dtype == object:
                    assert got.tolist() == want.tolist()
                else:
                    np.testing.assert_array_equal(got, want)
    assert laned.count("predict") == laned.count("predict_proba") == 2 * 3


def test_the_lane_and_the_frame_give_r_the_same_data_frame():
    """_r_frame builds what R's data.frame() builds (identical()), types and names kept."""
    import pandas as pd

    X = pd.DataFrame(  # noqa: N806
        {
            "x": [1.5, np.nan, 3.0],
            "n": [1, 2, 3],
            "a b": ["u", "v", "w"],
            "ok": [True, False, True],
            "cat": pd.Categorical(["p", "q", "p"]),
        }
    )
    with R_LOCK:
        ro.globalenv["built"] = _r_frame(ro, X)
        same = ro.r(
            "identical(built, data.frame(x = c(1.5, NaN, 3), n = 1:3, `a b` = c('u', 'v', 'w'), "
            "ok = c(TRUE, FALSE, TRUE), cat = factor(c('p', 'q', 'p')), check.names = FALSE))"
        )[0]
        none = ro.r("data.frame(x = numeric(0), n = integer(0))")
        empty = ro.r["identical"](_r_frame(ro, X.iloc[:0, :2]), none)[0]
    assert same and empty


def test_integers_beyond_r_integers_are_doubles_not_an_error(om, laned):
    """R's integers are 32 bits: a larger integer reaches the model as a double."""
    import pandas as pd

    X = pd.DataFrame({"a": [1.0, 3.0, 5.0], "b": [0, 1, 2]})  # noqa: N806
    with R_LOCK:
        linear = ro.r["lm"](ro.Formula("a ~ b"), data=_r_frame(ro, X))
    om.models.put(linear, "model")
    big = pd.DataFrame({"b": [2**40, -(2**31)]})
    want = 1.0 + 2.0 * big["b"].to_numpy(dtype="float64")
    np.testing.assert_allclose(perform(om, "model", "predict", big).result, want)
    body = JsonBody({"columns": ["b"], "data": [[2**40], [-(2**31)]]})
    for _ in range(2):
        np.testing.assert_allclose(perform(om, "model", "predict", body).result, want)
    assert laned == ["predict"] * 3  # the frame too: checked against the usual path first

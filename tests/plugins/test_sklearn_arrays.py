"""``SklearnPlugin.takes_arrays``: which estimators the REST server may hand a NumPy array.

True only for scikit-learn's own estimators, anywhere in a pipeline or
meta-estimator, none of which selects columns by name, runs user code on the
input or outputs pandas/polars.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import RandomForestClassifier, StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from omops.plugins import Plugin, default_registry
from omops.plugins.sklearn import SklearnPlugin


class Homemade(ClassifierMixin, BaseEstimator):
    """An estimator from outside scikit-learn: it might read column names."""

    def fit(self, X, y):  # noqa: N803
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):  # noqa: N803
        return np.full(len(X), self.classes_[0])


class MyScaler(StandardScaler):
    """A subclass of a scikit-learn estimator, defined here: user code."""


class Duck:
    """Fits and predicts, but is no BaseEstimator."""

    def fit(self, X, y):  # noqa: N803
        return self

    def predict(self, X):  # noqa: N803
        return np.zeros(len(X))


def frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30)})  # noqa: N806
    return X, (X["a"] > X["b"]).astype("int64")


def voting() -> VotingClassifier:
    return VotingClassifier(
        [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(random_state=0))]
    )


TAKES = {
    "logistic-regression": LogisticRegression,
    "scaler": StandardScaler,
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    "voting": voting,
    "stacking": lambda: StackingClassifier(
        [("lr", LogisticRegression()), ("rf", RandomForestClassifier(n_estimators=3))],
        final_estimator=LogisticRegression(),
    ),
    "feature-union": lambda: make_pipeline(
        FeatureUnion([("std", StandardScaler()), ("minmax", MinMaxScaler())]),
        LogisticRegression(),
    ),
    "grid-search": lambda: GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression()), {"logisticregression__C": [1.0]}
    ),
}

REFUSES = {
    "column-transformer": lambda: make_pipeline(
        ColumnTransformer([("std", StandardScaler(), ["a", "b"])]), LogisticRegression()
    ),
    "column-transformer-by-selector": lambda: make_pipeline(
        ColumnTransformer([("std", StandardScaler(), make_column_selector(dtype_include=float))]),
        LogisticRegression(),
    ),
    "column-transformer-alone": lambda: ColumnTransformer([("std", StandardScaler(), [0])]),
    "function-transformer": lambda: make_pipeline(
        FunctionTransformer(lambda X: X[["a", "b"]] * 2),
        LogisticRegression(),  # noqa: N803
    ),
    "function-transformer-alone": FunctionTransformer,
    "pandas-output": lambda: StandardScaler().set_output(transform="pandas"),
    "pipeline-with-pandas-output": lambda: make_pipeline(
        StandardScaler(), LogisticRegression()
    ).set_output(transform="pandas"),
    "polars-output": lambda: StandardScaler().set_output(transform="polars"),
    "homemade": Homemade,
    "homemade-subclass": MyScaler,
    "homemade-in-a-pipeline": lambda: make_pipeline(StandardScaler(), Homemade()),
    "homemade-in-voting": lambda: VotingClassifier(
        [("lr", LogisticRegression()), ("mine", Homemade())]
    ),
    "duck-in-voting": lambda: VotingClassifier([("lr", LogisticRegression()), ("duck", Duck())]),
    "column-transformer-in-voting": lambda: VotingClassifier(
        [("lr", LogisticRegression()), ("named", REFUSES["column-transformer"]())]
    ),
    "column-transformer-in-grid-search": lambda: GridSearchCV(
        REFUSES["column-transformer"](), {"logisticregression__C": [1.0]}
    ),
}


@pytest.mark.parametrize("fitted", [False, True], ids=["unfitted", "fitted"])
@pytest.mark.parametrize("name", sorted(TAKES))
def test_plain_sklearn_estimators_take_arrays(name: str, fitted: bool) -> None:
    model = TAKES[name]()
    if fitted:
        model.fit(*frame())
    assert SklearnPlugin().takes_arrays(model) is True


@pytest.mark.parametrize("name", sorted(REFUSES))
def test_estimators_that_may_read_names_do_not(name: str) -> None:
    assert SklearnPlugin().takes_arrays(REFUSES[name]()) is False


@pytest.mark.parametrize(
    "name", ["column-transformer", "function-transformer", "pipeline-with-pandas-output"]
)
def test_fitted_estimators_that_may_read_names_do_not(name: str) -> None:
    model = REFUSES[name]().fit(*frame())
    assert SklearnPlugin().takes_arrays(model) is False


def test_the_registered_plugin_is_the_one_asked() -> None:
    plugin = default_registry().get("sklearn.joblib")
    assert isinstance(plugin, SklearnPlugin)
    assert plugin.takes_arrays(LogisticRegression()) is True
    assert plugin.takes_arrays(Homemade()) is False


@pytest.mark.parametrize("kind", ["pandas.dataframe", "numpy.ndarray", "python.pickle"])
def test_other_plugins_take_no_arrays(kind: str) -> None:
    plugin = default_registry().get(kind)
    assert type(plugin).takes_arrays is Plugin.takes_arrays
    assert plugin.takes_arrays(LogisticRegression()) is False


def test_array_calls_do_not_warn_about_missing_names() -> None:
    """Arrays are sent on purpose: the server's log is not flooded with the warning."""
    X, y = frame()  # noqa: N806
    model = LogisticRegression().fit(X, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(X.to_numpy())
    plugin = SklearnPlugin()
    assert plugin.takes_arrays(model)
    view = plugin.array_view(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # even when every warning is an error
        got = plugin.perform_array(view, "predict", X.to_numpy()).result
    np.testing.assert_array_equal(got, model.predict(X))


def test_the_array_view_shares_the_fitted_state_and_leaves_the_model_alone() -> None:
    X, y = frame()  # noqa: N806
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    view = SklearnPlugin().array_view(pipeline)
    assert view is not pipeline and not hasattr(view, "feature_names_in_")
    assert list(pipeline.feature_names_in_) == list(X.columns), "the model keeps its names"
    assert view.steps[1][1].coef_ is pipeline.steps[1][1].coef_, "fitted arrays are shared"
    assert view.steps[0][1].mean_ is pipeline.steps[0][1].mean_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(view.predict(X.to_numpy()), pipeline.predict(X))
    plain = LogisticRegression().fit(X.to_numpy(), y)
    assert SklearnPlugin().array_view(plain) is plain, "nothing to remove: the model itself"


def test_asking_installs_no_filter() -> None:
    X, y = frame()  # noqa: N806
    assert SklearnPlugin().takes_arrays(LogisticRegression().fit(X, y))
    assert not SklearnPlugin().takes_arrays(make_pipeline(StandardScaler(), Homemade()).fit(X, y))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        LogisticRegression().fit(X, y).predict(X.to_numpy())


def test_a_model_fitted_without_names_around_steps_that_know_them_does_not() -> None:
    """The whole shows no names, a step checks them: only a DataFrame can be checked."""
    X, y = frame()  # noqa: N806
    kept = Pipeline([("keep", "passthrough"), ("lr", LogisticRegression())]).fit(X, y)
    assert getattr(kept, "feature_names_in_", None) is None
    assert not SklearnPlugin().takes_arrays(kept)
    plain = Pipeline([("keep", "passthrough"), ("lr", LogisticRegression())])
    assert SklearnPlugin().takes_arrays(plain.fit(X.to_numpy(), y))


def test_fitted_members_are_checked_too() -> None:
    """``estimators_`` of a fitted ensemble are walked, not only its parameters."""
    X, y = frame()  # noqa: N806
    model = VotingClassifier([("lr", LogisticRegression())]).fit(X, y)
    assert SklearnPlugin().takes_arrays(model)
    model.estimators_[0] = Homemade().fit(X, y)
    assert not SklearnPlugin().takes_arrays(model)

"""``keras.model``: Keras 3 models in the ``.keras`` format (TensorFlow CPU backend here)."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from omops.errors import InvalidData
from omops.runtime.actions import perform

from .conftest import COLUMNS, spy_lane, xy
from .contract import TIMEOUT, ModelContract

# TensorFlow's variables predate NumPy 2's copy= keyword (TensorFlow's warning, not ours)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def network(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


@functools.cache
def trained(seed: int = 0) -> keras.Model:
    X, y = xy(seed=seed)  # noqa: N806
    model = network(seed)
    model.fit(X.to_numpy("float32"), y.to_numpy("float32"), epochs=2, verbose=0)
    model.omops_input_columns = tuple(COLUMNS)  # what omops' own fit records
    return model


class TestKeras(ModelContract):
    kind = "keras.model"
    extra = "keras"
    modules = ("keras",)
    fits = True

    def make(self, seed=0):
        return trained(seed)

    def expected(self, model, X):  # noqa: N803
        return model.predict_on_batch(X.to_numpy("float32"))

    def test_fit_passes_epochs_batch_size_and_validation_split(self, runtime_om):
        om, runtime = runtime_om
        X, y = xy(n=40, seed=4)  # noqa: N806
        om.datasets.put(X.assign(y=y), "train", append=False)
        first = om.models.put(network(), "model").revision
        assert "feature_names" not in om.models.metadata("model").kind_meta
        fit = runtime.model("model").fit(
            "train[a,b,c]", "train[y]", epochs=3, batch_size=10, validation_split=0.25
        )
        summary = fit.get(timeout=TIMEOUT)
        assert [r for r, _ in om.models.revisions("model")] == [first, summary["revision"]]
        fitted = om.models.get("model")
        # 30 training rows (validation_split 0.25 of 40) in batches of 10, 3 epochs
        assert int(fitted.optimizer.iterations) == 9
        assert om.models.metadata("model").kind_meta["feature_names"] == COLUMNS
        got = runtime.model("model").predict("train[a,b,c]").get(timeout=TIMEOUT)
        self.assert_predictions(got, self.expected(fitted, X))
        score = runtime.model("model").score("train[a,b,c]", "train[y]").get(timeout=TIMEOUT)
        mae = float(np.mean(np.abs(fitted.predict_on_batch(X.to_numpy("float32"))[:, 0] - y)))
        assert score == pytest.approx(mae, rel=1e-4)

    def test_partial_fit_is_one_batch(self, om):
        X, y = xy(n=20)  # noqa: N806
        om.models.put(network(), "model")
        perform(om, "model", "partial_fit", X, y)
        perform(om, "model", "partial_fit", X, y)
        assert len(om.models.revisions("model")) == 3
        assert int(om.models.get("model").optimizer.iterations) == 2

    def test_an_uncompiled_model_cannot_fit(self, om):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        om.models.put(model, "model")
        X, y = xy()  # noqa: N806
        with pytest.raises(InvalidData, match="not compiled"):
            perform(om, "model", "fit", X, y)
        self.assert_predictions(
            perform(om, "model", "predict", X).result, model.predict_on_batch(X.to_numpy("float32"))
        )

    def test_text_columns_are_refused_clearly(self, om):
        om.models.put(self.make(), "model")
        X, _ = xy()  # noqa: N806
        with pytest.raises(InvalidData, match="column 'a' has dtype"):
            perform(om, "model", "predict", X.assign(a="x"))


# -- small batches: TensorFlow's ops in the calling thread, the same numbers -------------------


def _normalized(seed: int = 0) -> keras.Model:
    """Dense, batch normalization and dropout (inference: the moving statistics, no dropout)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    X, y = xy(seed=seed)  # noqa: N806
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X.to_numpy("float32"), y.to_numpy(), epochs=2, verbose=0)
    return model


def _recurrent(seed: int = 0) -> keras.Model:
    """An LSTM: a loop in the graph, which TensorFlow's single-threaded executor refuses."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    steps = keras.layers.Reshape((3, 1))(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LSTM(4)(steps)))


@pytest.fixture
def laned(monkeypatch):
    """The actions the Keras plugin's array lane performed."""
    from omops.plugins.keras_model import KerasPlugin

    return spy_lane(monkeypatch, KerasPlugin)


@pytest.mark.parametrize("rows", [1, 100])
def test_the_lane_answers_exactly_as_predict_on_batch(om, laned, rows):
    """The traced function's answer: predict_on_batch's, dtype, shape and columns by name."""
    from omops.runtime.inputs import JsonBody

    model = _normalized()
    model.omops_input_columns = tuple(COLUMNS)
    om.models.put(model, "model")
    X, _ = xy(n=rows, seed=4)  # noqa: N806
    want = model.predict_on_batch(X.to_numpy("float32"))
    shuffled = X[["c", "a", "b"]]
    body = JsonBody({"columns": list(shuffled.columns), "data": shuffled.values.tolist()})
    for given in (X, body):
        for _ in range(3):  # the usual path first, then the lane
            got = perform(om, "model", "predict", given).result
            assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (rows, 2)
            np.testing.assert_array_equal(got, want)
    assert laned == ["predict"] * 6


@pytest.mark.parametrize("keras_first", [True, False])
def test_a_model_with_a_loop_predicts_as_keras_does(keras_first):
    """Refused by the single-threaded executor once Keras ran it: marked, then predicted as usual."""
    from omops.plugins.keras_model import KerasPlugin

    model = _recurrent()
    X, _ = xy(n=5, seed=6)  # noqa: N806
    plugin = KerasPlugin()
    first = model.predict_on_batch(X.to_numpy("float32")) if keras_first else None
    answers = [plugin.perform(model, "predict", X, None).result for _ in range(2)]
    view = plugin.array_view(model)
    answers += [plugin.perform_array(view, "predict", X.to_numpy()).result for _ in range(2)]
    want = model.predict_on_batch(X.to_numpy("float32"))
    for got in [*answers, first if keras_first else want]:
        np.testing.assert_array_equal(got, want)
    # TensorFlow keeps the loop a loop when it first runs the graph single-threaded
    assert getattr(model, "_omops_threaded_executor", False) is keras_first


def test_a_wrong_width_is_invalid_data_on_every_path(om):
    """Not a matrix size error from inside TensorFlow (this model does not check its input)."""
    model = _normalized()
    om.models.put(model, "model")
    X, _ = xy()  # noqa: N806
    perform(om, "model", "predict", X)  # the lane has learnt this model
    for given in (X[["a", "b"]], X[["a", "b"]].to_numpy(), X[["a", "b"]].iloc[:1]):
        with pytest.raises(InvalidData, match="takes 3 input columns, got 2"):
            perform(om, "model", "predict", given)


def test_a_model_of_two_outputs_is_not_traced():
    from omops.plugins.keras_model import KerasPlugin

    inputs = keras.Input((3,))
    model = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(2)(inputs)])
    assert KerasPlugin().array_view(model) is model


@pytest.mark.parametrize("rows", [1, 2000])  # one batch, and model.predict's batches
def test_a_model_of_two_outputs_predicts_each_output_by_name(om, rows):
    inputs = keras.Input((3,))
    first = keras.layers.Dense(1, name="score")(inputs)
    second = keras.layers.Dense(2, name="mix")(inputs)
    model = keras.Model(inputs, [first, second])
    om.models.put(model, "two")
    X = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")  # noqa: N806
    found = perform(om, "two", "predict", X).result
    want = model.predict_on_batch(X)
    assert sorted(found) == sorted(model.output_names)
    for name, output in zip(model.output_names, want, strict=True):
        assert found[name].shape == output.shape
        np.testing.assert_allclose(found[name], output, rtol=1e-5, atol=1e-6)
    assert perform(om, "two", "predict", X).value().keys() == found.keys()  # JSON-able

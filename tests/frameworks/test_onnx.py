"""``onnx.model``: ONNX models run with onnxruntime; scikit-learn models converted on put."""

from __future__ import annotations

import functools
import pickletools

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omops.errors import InvalidData
from omops.plugins import default_registry
from omops.plugins.onnx_model import OnnxModel
from omops.runtime.actions import perform

from .conftest import xy
from .contract import TIMEOUT, ModelContract


@functools.cache
def pipeline(seed: int = 0):
    X, y = xy(seed=seed)  # noqa: N806
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0 + seed)).fit(X, y)


class TestConvertedClassifier(ModelContract):
    """``put(clf, kind='onnx.model')``: converted with skl2onnx, served without unpickling."""

    kind = "onnx.model"
    extra = "onnx"
    modules = ("onnxruntime", "onnx")
    selected_automatically = False

    def make(self, seed=0):
        return pipeline(seed)

    def expected(self, model, X):  # noqa: N803
        return model.predict(X)

    def assert_same(self, got, want):
        # what comes back is the converted model: it predicts what scikit-learn does
        assert isinstance(got, OnnxModel)
        X, _ = xy(seed=3)  # noqa: N806
        want = want if isinstance(want, OnnxModel) else OnnxModel(*_converted(want))
        np.testing.assert_array_equal(got.predict(X), want.predict(X))
        np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X), rtol=1e-6)

    def test_selected_without_kind(self, om):
        # a scikit-learn model without kind= stays a scikit-learn model ...
        assert om.models.put(self.make(), "auto").kind == "sklearn.joblib"
        # ... an ONNX model is picked by type
        proto = om.models.put(self.make(), "m", kind=self.kind) and om.models.get("m").proto
        assert isinstance(proto, onnx.ModelProto)
        assert default_registry().select(proto, "models").kind == self.kind
        assert om.models.put(proto, "proto").kind == self.kind

    def test_converted_predictions_match_scikit_learn(self, runtime_om):
        om, runtime = runtime_om
        X, _ = xy(seed=11)  # noqa: N806
        om.datasets.put(X, "inputs", append=False)
        model = self.make()
        meta = om.models.put(model, "model", kind=self.kind)
        assert meta.kind_meta["converted_from"].endswith("Pipeline")
        labels = runtime.model("model").predict("inputs").get(timeout=TIMEOUT)
        assert labels == model.predict(X).tolist()
        proba = runtime.model("model").predict_proba("inputs").get(timeout=TIMEOUT)
        np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5)

    def test_no_pickle_is_stored(self, om):
        om.models.put(self.make(), "model", kind=self.kind)
        part = om.catalog.parts(om.catalog.lookup(om.bucket, "models", "model"))[0]
        data = om.blobs.read(part.blob)
        assert onnx.load_from_string(data).producer_name == "skl2onnx"
        with pytest.raises(ValueError):  # not a pickle stream
            list(pickletools.genops(data))

    def test_unfitted_or_unconvertible_models_are_refused(self, om):
        with pytest.raises(InvalidData, match="fit LogisticRegression first"):
            om.models.put(LogisticRegression(), "model", kind=self.kind)
        with pytest.raises(InvalidData, match="converts a fitted scikit-learn"):
            om.models.put({"not": "a model"}, "model", kind=self.kind)
        assert om.models.list() == []

    def test_columns_are_matched_by_name(self, om):
        om.models.put(self.make(), "model", kind=self.kind)
        X, _ = xy(seed=1)  # noqa: N806
        shuffled = X[["c", "a", "b"]]
        assert (
            perform(om, "model", "predict", shuffled).result.tolist()
            == self.make().predict(X).tolist()
        )
        with pytest.raises(InvalidData, match=r"lacks column\(s\) \['c'\]"):
            perform(om, "model", "predict", X[["a", "b"]])


def _converted(model):
    from omops.plugins.onnx_model import _convert

    data, names, meta = _convert(model)
    return data, names


@functools.cache
def forest_proto(seed: int = 0) -> onnx.ModelProto:
    X, _ = xy(seed=seed)  # noqa: N806
    forest = RandomForestRegressor(n_estimators=3, max_depth=3, random_state=seed)
    forest.fit(X.to_numpy(), X["a"] + X["b"])
    return onnx.load_from_string(_converted(forest)[0])


class TestRegressorProto(ModelContract):
    """An ``onnx.ModelProto`` put as it is (here: a converted random forest)."""

    kind = "onnx.model"
    extra = "onnx"
    modules = ("onnxruntime", "onnx")
    feature_names = None  # a plain ModelProto names no columns

    def make(self, seed=0):
        return forest_proto(seed)

    def expected(self, model, X):  # noqa: N803
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString())
        name = session.get_inputs()[0].name
        return session.run(None, {name: X.to_numpy(np.float32)})[0]

    def assert_same(self, got, want):
        assert isinstance(got, OnnxModel)
        assert got.proto == want

    def test_several_inputs_take_columns_by_name(self, om):
        from onnx import TensorProto, helper

        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
        b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])
        out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 1])
        graph = helper.make_graph(
            [helper.make_node("Add", ["a", "b"], ["sum"])], "add", [a, b], [out]
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        meta = om.models.put(proto, "adder")
        assert meta.kind_meta["feature_names"] == ["a", "b"]
        frame = pd.DataFrame({"b": [1.0, 2.0], "a": [10.0, 20.0], "z": [0.0, 0.0]})
        np.testing.assert_array_equal(
            perform(om, "adder", "predict", frame).result, [[11.0], [22.0]]
        )

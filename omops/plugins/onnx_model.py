"""``onnx.model``: ONNX models, run with onnxruntime.

``om.models.put(model_proto, 'm')`` stores an ``onnx.ModelProto``;
``om.models.put(clf, 'm', kind='onnx.model')`` converts a fitted scikit-learn
model with skl2onnx first (classifiers without ZipMap, so probabilities are a
plain tensor), so that a server predicts without unpickling anything. Reading
one back gives an :class:`OnnxModel`: the model and its inference session.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins._frameworks import check_action, columns_of, describe_model, framework
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["OnnxModel", "OnnxPlugin"]

KIND = "onnx.model"
#: onnxruntime's element types, as NumPy dtypes.
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def _onnx() -> Any:
    return framework(KIND, "onnx", extra="onnx", what="onnx")


def _runtime() -> Any:
    return framework(KIND, "onnxruntime", extra="onnx", what="onnxruntime")


class OnnxModel:
    """An ONNX model and its onnxruntime session (what ``om.models.get`` returns).

    Parameters
    ----------
    data : bytes
        The serialized ``ModelProto``.
    feature_names : list of str, optional
        The input columns, in order, when the model has one 2-D input.
    flatten : bool, default=False
        Whether a one-column output is returned as a vector (models converted
        from scikit-learn, whose ``predict`` returns one).

    Attributes
    ----------
    session : onnxruntime.InferenceSession
    """

    def __init__(
        self, data: bytes, feature_names: Sequence[str] | None = None, *, flatten: bool = False
    ) -> None:
        ort = _runtime()
        self.data = bytes(data)
        self.feature_names = list(feature_names) if feature_names else None
        self.flatten = flatten
        options = ort.SessionOptions()
        # Between calls, onnxruntime's threads would spin waiting for work, taking the
        # cores a server's event loop and its clients need: let them sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, _DTYPES.get(i.type), i.shape) for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def proto(self) -> Any:
        """The model as an ``onnx.ModelProto``."""
        return _onnx().load_from_string(self.data)

    def run(self, X: Any) -> list[Any]:  # noqa: N803
        """All outputs for the rows of ``X`` (a DataFrame or an array)."""
        return self.session.run(None, self._feeds(X))

    def predict(self, X: Any) -> Any:  # noqa: N803
        """The first output (labels for a converted classifier)."""
        out = self.run(X)[0]
        if self.flatten and out.ndim == 2 and out.shape[1] == 1:
            out = out.ravel()
        return out

    def predict_proba(self, X: Any) -> Any:  # noqa: N803
        """The ``probabilities`` output (or the second one) of a classifier."""
        if "probabilities" in self.outputs:
            index = self.outputs.index("probabilities")
        elif len(self.outputs) == 2:
            index = 1
        else:
            raise InvalidData(
                f"the ONNX model has no probabilities output; its outputs are {self.outputs}"
            )
        return self.run(X)[index]

    def _feeds(self, X: Any) -> dict[str, Any]:  # noqa: N803
        import numpy as np

        from omops.plugins._frameworks import as_matrix

        if len(self._inputs) == 1:
            name, dtype, _ = self._inputs[0]
            return {name: as_matrix(X, dtype or "float32", KIND)}
        columns = columns_of(X)
        if columns is None:
            raise InvalidData(
                f"the ONNX model has inputs {[i[0] for i in self._inputs]}: send a table "
                "with one column of each name"
            )
        missing = [name for name, _, _ in self._inputs if name not in columns]
        if missing:
            raise InvalidData(f"input lacks column(s) {missing} for the ONNX model's inputs")
        return {
            name: np.asarray(X[name].to_numpy(), dtype=dtype or "float32").reshape(-1, 1)
            for name, dtype, _ in self._inputs
        }


class OnnxPlugin(Plugin):
    """``onnx.ModelProto``, :class:`OnnxModel`, and (with ``kind=``) fitted scikit-learn models.

    ``kind_meta``: ``inputs``/``outputs`` (names), ``opset``, ``producer``,
    ``converted_from`` (the scikit-learn class, when converted),
    ``feature_names`` and ``n_features`` when known.
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"predict", "predict_proba"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        if isinstance(obj, OnnxModel):
            return True
        onnx = sys.modules.get("onnx")
        return onnx is not None and isinstance(obj, onnx.ModelProto)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        onnx = _onnx()
        meta: dict[str, Any] = {}
        if isinstance(obj, OnnxModel):
            data, names = obj.data, obj.feature_names
            meta["flatten"] = obj.flatten
        elif isinstance(obj, onnx.ModelProto):
            data, names = obj.SerializeToString(), None
        else:
            data, names, meta = _convert(obj)
        proto = onnx.load_from_string(data)
        inputs = [i.name for i in proto.graph.input]
        meta.update(
            inputs=inputs,
            outputs=[o.name for o in proto.graph.output],
            opset=max((o.version for o in proto.opset_import), default=0),
            producer=proto.producer_name,
        )
        width = _width(proto)
        if names:
            meta["feature_names"] = list(names)
        elif len(inputs) > 1:
            meta["feature_names"] = inputs
        if width is not None:
            meta["n_features"] = width
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
        self._no_query(query)
        data = blobs.read(self._single(parts, self.kind).blob)
        names = kind_meta.get("feature_names") if len(kind_meta.get("inputs", [])) == 1 else None
        try:
            return OnnxModel(data, names, flatten=bool(kind_meta.get("flatten")))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            if type(exc).__module__.startswith("onnxruntime"):
                raise InvalidData(f"onnxruntime cannot run this model: {exc}") from None
            raise

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(
            kind_meta, ("converted_from", "inputs", "outputs", "feature_names", "n_features")
        )

    def takes_arrays(self, obj: Any) -> bool:
        """True for one-input models: they are given the frame's numbers as a tensor either way."""
        return isinstance(obj, OnnxModel) and len(obj._inputs) == 1

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        check_action(KIND, self.actions, action)
        if kwargs:
            raise InvalidData(f"ONNX models take no arguments, got {sorted(kwargs)}")
        try:
            result = obj.predict(X) if action == "predict" else obj.predict_proba(X)
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise InvalidData(f"the ONNX model could not {action} this input: {exc}") from None
            raise
        return ActionOutcome(result=result)


def _convert(model: Any) -> tuple[bytes, list[str] | None, dict[str, Any]]:
    """A fitted scikit-learn model as ONNX bytes (one float input), its columns and meta."""
    base = sys.modules.get("sklearn.base")
    if base is None or not isinstance(model, base.BaseEstimator):
        raise InvalidData(
            f"kind {KIND!r} stores an onnx.ModelProto, or converts a fitted scikit-learn "
            f"model; got {type(model).__name__}"
        )
    skl2onnx = framework(KIND, "skl2onnx", extra="onnx", what="skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    width = getattr(model, "n_features_in_", None)
    if width is None:
        raise InvalidData(
            f"kind {KIND!r} converts fitted scikit-learn models; fit {type(model).__name__} first"
        )
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    try:
        proto = skl2onnx.convert_sklearn(
            model,
            initial_types=[("input", FloatTensorType([None, int(width)]))],
            options=options,
        )
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:
        raise InvalidData(
            f"skl2onnx cannot convert {type(model).__name__}: {exc}; store it as "
            "kind='sklearn.joblib' instead"
        ) from None
    names = getattr(model, "feature_names_in_", None)
    meta = {
        "converted_from": f"{type(model).__module__}.{type(model).__qualname__}",
        "flatten": True,
    }
    return proto.SerializeToString(), None if names is None else [str(n) for n in names], meta


def _width(proto: Any) -> int | None:
    """The width of a single 2-D input with a known second dimension."""
    if len(proto.graph.input) != 1:
        return None
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        return None
    return int(dims[1].dim_value)

"""``keras.model``: Keras 3 models, stored in the ``.keras`` format.

The ``.keras`` file holds the architecture, the weights and, for a compiled
model, the compile configuration and optimizer state, so a stored model can
be fitted again (each fit is a new revision). Keras runs on whichever backend
it is configured with (``KERAS_BACKEND``; TensorFlow by default).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins._frameworks import (
    INPUT_COLUMNS,
    as_matrix,
    blob_file,
    check_action,
    describe_model,
    framework,
    remember_columns,
    remembered_columns,
    scratch,
    stored_file,
)
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["KerasPlugin"]

KIND = "keras.model"
#: Up to this many rows a prediction is one batch (``predict_on_batch``: no
#: per-call dataset set-up); larger inputs go through ``predict`` in batches.
ONE_BATCH_ROWS = 8192
_FIT_DEFAULTS = {"verbose": 0}
#: Set on a loaded model whose graph TensorFlow's single-threaded executor refuses.
_THREADED = "_omops_threaded_executor"


def _keras() -> Any:
    keras = framework(KIND, "keras", extra="keras", what="Keras 3 with a backend")
    if not hasattr(keras, "saving") or int(keras.__version__.split(".")[0]) < 3:
        raise PluginError(
            f"kind {KIND!r} needs Keras 3, found keras {keras.__version__}: "
            "pip install 'omops[keras]'"
        )
    return keras


class KerasPlugin(Plugin):
    """Any ``keras.Model`` (Sequential, functional or subclassed and registered).

    ``kind_meta``: ``model`` (the class), ``keras_version``, ``backend``,
    ``compiled``, ``n_features`` (a single 2-D input's width) and
    ``feature_names`` (the columns the model was fitted on through omops, or
    set as ``model.omops_input_columns``).
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"fit", "partial_fit", "predict", "score"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        keras = sys.modules.get("keras")
        model = getattr(keras, "Model", None) if keras is not None else None
        return isinstance(model, type) and isinstance(obj, model)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        keras = _keras()
        if not isinstance(obj, keras.Model):
            raise InvalidData(f"kind {KIND!r} stores a keras.Model, got {type(obj).__name__}")
        meta: dict[str, Any] = {
            "model": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "compiled": bool(getattr(obj, "compiled", False)),
        }
        width = _input_width(obj)
        if width is not None:
            meta["n_features"] = width
        columns = remembered_columns(obj)
        if columns is not None:
            meta["feature_names"] = columns
        _build_optimizer(obj)
        with scratch() as folder:
            path = folder / "model.keras"
            try:
                obj.save(path)
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise InvalidData(f"kind {KIND!r} cannot save this model: {exc}") from None
            part = stored_file(blobs, path)
        return Stored(parts=[part], kind_meta=meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        keras = _keras()
        self._no_query(query)
        with blob_file(blobs, self._single(parts, self.kind).blob, "model.keras") as path:
            try:
                model = keras.saving.load_model(path)
            except (ValueError, TypeError) as exc:
                raise InvalidData(
                    f"kind {KIND!r} cannot load this model here ({exc}); custom layers must "
                    "be registered with keras.saving.register_keras_serializable in an "
                    "installed package"
                ) from None
        if "feature_names" in kind_meta:
            setattr(model, INPUT_COLUMNS, tuple(kind_meta["feature_names"]))
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("model", "backend", "feature_names", "n_features"))

    def takes_arrays(self, obj: Any) -> bool:
        """True: the model is given the frame's numbers as an array either way."""
        return True

    def array_view(self, obj: Any) -> Any:
        """The model traced once as a TensorFlow function of one float32 matrix (a :class:`_Traced`).

        Only for the TensorFlow backend and a model of one 2-D input and one
        output; any other model is its own view (``predict_on_batch``).
        """
        return _Traced.of(obj) or obj

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """Predictions from the traced function: what ``predict_on_batch`` computes, less
        Keras' per-call dispatch (~0.2 ms of a 1-row prediction's ~0.4 ms).

        The lane checks the first answer of each model revision against the usual one.
        """
        if not isinstance(obj, _Traced):
            return super().perform_array(obj, action, X)
        x = as_matrix(X, "float32", KIND)
        if action != "predict" or len(x) > ONE_BATCH_ROWS or x.shape[1] != obj.width:
            return self.perform(obj.model, action, x, None)  # the usual call, and its errors
        return ActionOutcome(result=obj.predict(x))

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        check_action(KIND, self.actions, action)
        x = as_matrix(X, "float32", KIND)
        _check_width(obj, x)
        if action == "predict":
            if len(x) <= ONE_BATCH_ROWS and not kwargs:
                return ActionOutcome(result=_numpy(_predict_batch(obj, x), obj))
            found = obj.predict(x, **{**_FIT_DEFAULTS, **kwargs})
            return ActionOutcome(result=_numpy(found, obj))
        _check_compiled(obj, action)
        targets = None if y is None else _targets(y)
        if action == "fit":
            obj.fit(x, targets, **{**_FIT_DEFAULTS, **kwargs})
        elif action == "partial_fit":
            obj.train_on_batch(x, targets, **kwargs)
        else:  # score
            found = obj.evaluate(x, targets, return_dict=True, **{**_FIT_DEFAULTS, **kwargs})
            return ActionOutcome(result=_score(found))
        remember_columns(obj, X)
        return ActionOutcome(model=obj)


class _Traced:
    """A Keras model called as one traced TensorFlow function of a float32 matrix."""

    __slots__ = ("_omops_threaded_executor", "function", "model", "width")

    def __init__(self, model: Any, function: Any, width: int) -> None:
        self.model = model
        self.function = function
        self.width = width
        self._omops_threaded_executor = False  # see _inline

    @classmethod
    def of(cls, model: Any) -> _Traced | None:
        """``model`` traced (once per loaded revision), or None where that does not apply."""
        width = _input_width(model)
        if width is None or _keras().backend.backend() != "tensorflow":
            return None
        import tensorflow as tf

        spec = tf.TensorSpec([None, width], tf.float32)
        call = tf.function(lambda x: model(x, training=False), autograph=False)
        try:
            function = call.get_concrete_function(spec)
        except (ValueError, TypeError, NotImplementedError):  # a model that cannot be traced so
            return None
        if not isinstance(function.structured_outputs, tf.Tensor):  # several outputs
            return None
        return cls(model, function, width)

    def predict(self, x: Any) -> Any:
        """The model's output for ``x`` (float32, ``width`` columns) as NumPy."""
        import tensorflow as tf

        tensor = tf.constant(x)
        return _inline(lambda: self.function(tensor), self).numpy()


def _inline(call: Any, marks: Any) -> Any:
    """``call()`` with TensorFlow's ops run in the calling thread where TensorFlow can.

    TensorFlow runs a function's ops on its inter-op threads and the caller
    waits: for one small batch that is a few thread hand-offs per call, each
    a wait for a core on a busy machine. Its single-threaded executor runs
    them in the caller's thread, with the same kernels (the same numbers). It
    refuses graphs with low-level control flow (RNN layers, loops): ``marks``
    (the model, or its traced view) is then marked and called the usual way
    from then on.
    """
    if getattr(marks, _THREADED, False):
        return call()
    import tensorflow as tf
    from tensorflow.python.eager import context

    try:
        with context.function_executor_type("SINGLE_THREADED_EXECUTOR"):
            return call()
    except tf.errors.FailedPreconditionError as exc:
        if "Single-threaded executor" not in str(exc):
            raise
    setattr(marks, _THREADED, True)
    return call()


def _predict_batch(model: Any, x: Any) -> Any:
    """``model.predict_on_batch(x)``, in the calling thread where TensorFlow can (:func:`_inline`)."""
    if _keras().backend.backend() != "tensorflow":
        return model.predict_on_batch(x)
    return _inline(lambda: model.predict_on_batch(x), model)


def _check_width(model: Any, x: Any) -> None:
    """InvalidData for a matrix of another width than the model's one 2-D input takes.

    TensorFlow would fail inside the graph (a matrix size error, not the
    caller's ValueError) for models that do not check their input shape.
    """
    width = _input_width(model)
    if width is not None and x.shape[1] != width:
        raise InvalidData(
            f"the Keras model takes {width} input columns, got {x.shape[1]}: "
            "send the columns it was fitted with"
        )


def _input_width(model: Any) -> int | None:
    """The number of columns of a model with one 2-D input ``(None, n)``, else None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a subclassed model not built yet
        return None
    if not inputs or len(inputs) != 1:
        return None
    shape = tuple(inputs[0].shape)
    return int(shape[1]) if len(shape) == 2 and shape[1] is not None else None


def _build_optimizer(model: Any) -> None:
    """Give a compiled, never fitted model's optimizer its variables before saving.

    Otherwise the file holds an optimizer without slots, and loading it warns
    that the optimizer's variables were skipped (they are made on first fit).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.built:
        optimizer.build(model.trainable_variables)


def _check_compiled(model: Any, action: str) -> None:
    if not getattr(model, "compiled", False):
        raise InvalidData(
            f"the Keras model is not compiled, so it cannot {action}: call "
            "model.compile(optimizer=..., loss=...) before storing it"
        )


def _targets(y: Any) -> Any:
    import numpy as np

    return np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)


def _numpy(value: Any, model: Any = None) -> Any:
    """A prediction as NumPy: one array, or ``{output name: array}`` for a model with
    several outputs (Keras gives a list or a dict of them)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping):
        return {str(name): np.asarray(output) for name, output in value.items()}
    if isinstance(value, (list, tuple)) and len(value) > 1:
        names = [str(n) for n in (getattr(model, "output_names", None) or [])]
        if len(names) != len(value) or len(set(names)) != len(names):
            names = [f"output_{i}" for i in range(len(value))]
        return {name: np.asarray(output) for name, output in zip(names, value, strict=True)}
    return np.asarray(value)


def _score(found: Mapping[str, Any]) -> float:
    """The first metric given to ``compile`` (e.g. accuracy), else the loss."""
    metrics = [k for k in found if k != "loss"]
    return float(found[metrics[0]] if metrics else found["loss"])

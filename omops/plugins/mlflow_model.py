"""``mlflow.model``: MLflow models of any Python flavour, predicted through ``mlflow.pyfunc``.

Put one of:

* the path of an MLflow model folder (one with an ``MLmodel`` file);
* a ``runs:/<run id>/<path>`` or ``models:/<name>/<version or alias>`` URI,
  resolved with MLflow's tracking URI (``MLFLOW_TRACKING_URI`` or
  ``mlflow.set_tracking_uri``);
* :class:`MLflowModel` ``(uri, tracking_uri=...)`` to name the tracking server
  (a ``sqlite:///`` file or a folder works as well as a server).

The model's folder is copied into omops (one archive), so serving it needs
neither the tracking server nor the original files. Reading it back gives an
``mlflow.pyfunc.PyFuncModel``.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omops._archives import extract_all
from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins._frameworks import check_action, describe_model, framework, scratch, to_numpy
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["MLflowModel", "MLflowPlugin"]

KIND = "mlflow.model"
#: URI schemes MLflow resolves through a tracking server or model registry.
URI_SCHEMES = ("runs:/", "models:/")
#: Where a model read back keeps the folder it was loaded from.
_FOLDER = "_omops_folder"


@dataclass(frozen=True)
class MLflowModel:
    """An MLflow model to store: a folder path or a ``runs:/``/``models:/`` URI.

    Parameters
    ----------
    uri : str
    tracking_uri : str, optional
        The tracking server (or ``sqlite:///`` file, or folder) that resolves
        ``uri``; MLflow's current one when not given.
    """

    uri: str
    tracking_uri: str | None = None


def _mlflow() -> Any:
    framework(KIND, "mlflow.pyfunc", extra="mlflow", what="MLflow")
    return sys.modules["mlflow"]


def is_model_folder(text: str) -> bool:
    """Whether ``text`` is the path of a folder with an ``MLmodel`` file."""
    if len(text) > 4096 or "\0" in text or "\n" in text:
        return False
    path = os.path.expanduser(text)
    return os.path.isfile(os.path.join(path, "MLmodel"))


class MLflowPlugin(Plugin):
    """MLflow model folders and URIs; ``PyFuncModel`` objects read back from omops.

    ``kind_meta``: ``source`` (the URI or path put), ``flavors``,
    ``loader_module``, ``run_id``, ``mlflow_version``, ``feature_names`` (the
    signature's input columns, when it has them).
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"predict"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        if isinstance(obj, MLflowModel):
            return True
        if isinstance(obj, str):
            return obj.strip().startswith(URI_SCHEMES) or is_model_folder(obj)
        pyfunc = sys.modules.get("mlflow.pyfunc")
        return (
            pyfunc is not None
            and isinstance(obj, pyfunc.PyFuncModel)
            and os.path.isdir(getattr(obj, _FOLDER, ""))
        )

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        mlflow = _mlflow()
        with scratch() as folder:
            source, local = _local_folder(mlflow, obj, folder)
            meta = _describe_folder(mlflow, local)
            meta["source"] = source
            key, size = blobs.put_with(lambda out: _archive(local, out))
        return Stored(parts=[PartRecord(blob=key, size=size)], kind_meta=meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        mlflow = _mlflow()
        self._no_query(query)
        folder = tempfile.mkdtemp(prefix="omops-mlflow-")
        try:
            with (
                blobs.open(self._single(parts, self.kind).blob) as fh,
                tarfile.open(fileobj=fh, mode="r|") as archive,
            ):
                extract_all(archive, folder)
            model = mlflow.pyfunc.load_model(os.path.join(folder, "model"))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # Flavours may read their files lazily: the folder lives as long as the model.
        setattr(model, _FOLDER, os.path.join(folder, "model"))
        weakref.finalize(model, shutil.rmtree, folder, True)
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("source", "flavors", "run_id", "feature_names"))

    def takes_arrays(self, obj: Any) -> bool:
        """True for a model whose signature names plain number columns (see :class:`_Checked`)."""
        return _Checked.of(obj) is not None

    def array_view(self, obj: Any) -> Any:
        """A :class:`_Checked` model, or the model itself when its schema is not that plain."""
        return _Checked.of(obj) or obj

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """The flavour's predict on the array's columns: the schema holds for them already.

        ``pyfunc.predict`` checks a DataFrame against the input schema on every
        call (~0.4 ms for one row), then calls the flavour's predict. An array
        of the schema's dtype, columns in the schema's order, passes that check
        unchanged, so the flavour is called with it at once; any other array
        takes ``pyfunc.predict`` (the lane still checks the first answer of
        each dtype against the usual path's).
        """
        if not isinstance(obj, _Checked):
            return super().perform_array(obj, action, X)
        check_action(KIND, self.actions, action)
        import pandas as pd

        frame = pd.DataFrame(X, columns=obj.columns)
        errors = _input_errors(_mlflow())
        try:
            result = obj.predict(frame) if X.dtype == obj.dtype else obj.model.predict(frame)
        except errors as exc:
            raise InvalidData(f"the MLflow model could not predict this input: {exc}") from None
        return ActionOutcome(result=to_numpy(result))

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        mlflow = _mlflow()
        check_action(KIND, self.actions, action)
        errors = _input_errors(mlflow)
        try:
            result = obj.predict(X, params=kwargs or None)
        except errors as exc:
            raise InvalidData(f"the MLflow model could not predict this input: {exc}") from None
        return ActionOutcome(result=to_numpy(result))


class _Checked:
    """A pyfunc model whose input schema an array of one dtype always satisfies.

    That is a signature of named columns, all ``double`` (float64) or all
    ``long`` (int64), no parameters, and no type hints (these change what the
    model is given). :meth:`predict` then does what ``PyFuncModel.predict``
    does but the schema check: the prediction context, then the flavour's
    predict function.
    """

    __slots__ = ("_context", "_params", "columns", "dtype", "model")

    _DTYPES = {"double": "float64", "long": "int64"}

    def __init__(self, model: Any, columns: list[str], dtype: Any, context: Any, params: bool):
        self.model = model
        self.columns = columns
        self.dtype = dtype
        self._context = context
        self._params = params

    @classmethod
    def of(cls, model: Any) -> _Checked | None:
        """``model`` checked once, or None when its schema is not that plain."""
        import inspect

        import numpy as np

        pyfunc = sys.modules.get("mlflow.pyfunc")
        if pyfunc is None or not isinstance(model, pyfunc.PyFuncModel):
            return None
        try:
            meta = model.metadata
            predict = model._predict_fn
            context = (
                pyfunc._try_get_prediction_context,
                pyfunc.set_prediction_context,
                pyfunc.Context,
                pyfunc._get_dependencies_schema_from_model,
            )
            hinted = meta._is_signature_from_type_hint() or meta._is_type_hint_from_example()
        except AttributeError:  # an MLflow whose pyfunc works otherwise: pyfunc.predict it is
            return None
        schema = meta.get_input_schema()
        if hinted or meta.get_params_schema() is not None or schema is None:
            return None
        if schema.is_tensor_spec() or not schema.has_input_names():
            return None
        types = {str(getattr(spec.type, "name", spec.type)) for spec in schema.inputs}
        if len(types) != 1 or next(iter(types)) not in cls._DTYPES:
            return None
        dtype = np.dtype(cls._DTYPES[next(iter(types))])
        takes = inspect.signature(predict).parameters.get("params")
        params = takes is not None and takes.kind != inspect.Parameter.VAR_KEYWORD
        return cls(model, [str(n) for n in schema.input_names()], dtype, context, params)

    def predict(self, frame: Any) -> Any:
        """What ``PyFuncModel.predict(frame)`` answers, without checking the schema again."""
        current, use, make, dependencies = self._context
        model = self.model
        context = current() or make()
        with use(context):
            if schema := dependencies(model._model_meta):
                context.update(**schema)
            if model.model_id:
                context.update(model_id=model.model_id)
            if self._params:
                return model._predict_fn(frame, params=None)
            return model._predict_fn(frame)


def _input_errors(mlflow: Any) -> tuple[type, ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _local_folder(mlflow: Any, obj: Any, scratch_folder: Path) -> tuple[str, str]:
    """What was put (for the record) and a local folder holding the model."""
    pyfunc = mlflow.pyfunc
    if isinstance(obj, pyfunc.PyFuncModel) and os.path.isdir(getattr(obj, _FOLDER, "")):
        return getattr(obj, _FOLDER), getattr(obj, _FOLDER)
    spec = (
        obj if isinstance(obj, MLflowModel) else MLflowModel(obj) if isinstance(obj, str) else None
    )
    if spec is None:
        raise InvalidData(
            f"kind {KIND!r} stores an MLflow model folder or a runs:/ or models:/ URI, "
            f"got {type(obj).__name__}"
        )
    uri = spec.uri.strip()
    if is_model_folder(uri):
        return os.path.abspath(os.path.expanduser(uri)), os.path.expanduser(uri)
    if not uri.startswith(URI_SCHEMES) and "://" not in uri:
        raise InvalidData(
            f"{uri!r} is neither an MLflow model folder (no MLmodel file there) nor a "
            "runs:/ or models:/ URI"
        )
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        location = _artifact_location(mlflow, uri, spec.tracking_uri)
        local = download_artifacts(artifact_uri=location, dst_path=str(scratch_folder))
    except MlflowException as exc:
        where = spec.tracking_uri or mlflow.get_tracking_uri()
        raise InvalidData(f"MLflow cannot find {uri!r} (tracking URI {where}): {exc}") from None
    if not is_model_folder(local):
        raise InvalidData(f"{uri!r} is not an MLflow model: it has no MLmodel file")
    return uri, local


def _artifact_location(mlflow: Any, uri: str, tracking_uri: str | None) -> str:
    """Where the artifacts of a ``runs:/`` or ``models:/`` URI lie (a folder or store URI).

    Resolved here with a client of ``tracking_uri`` (also the registry): MLflow's
    own ``download_artifacts(tracking_uri=...)`` resolves logged and registered
    models through the process-wide tracking URI instead.
    """
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    for _ in range(8):  # a registered version's source may be another URI
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            return _run_location(client, run_id, path)
        if not uri.startswith("models:/"):
            return uri
        reference = uri.removeprefix("models:/").strip("/")
        if reference.startswith("m-") and "/" not in reference:
            return client.get_logged_model(reference).artifact_location
        name, _, version = reference.partition("/")
        if "@" in name:
            name, _, alias = name.partition("@")
            uri = client.get_model_version_by_alias(name, alias).source
        elif version.isdigit():
            uri = client.get_model_version(name, version).source
        else:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                return uri  # MLflow's error follows
            uri = max(versions, key=lambda v: int(v.version)).source
    return uri


def _run_location(client: Any, run_id: str, path: str) -> str:
    """A run's artifact folder ``path``, or the model logged under that name by the run."""
    run = client.get_run(run_id)
    name = path.split("/", 1)[0]
    search = getattr(client, "search_logged_models", None)  # MLflow 3 and later
    logged = search and search(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
    )
    if logged:  # MLflow 3: log_model(name=...) keeps the model outside the run's artifacts
        rest = path.split("/", 1)[1] if "/" in path else ""
        return "/".join(p for p in (logged[0].artifact_location, rest) if p)
    return f"{run.info.artifact_uri.rstrip('/')}/{path}"


def _describe_folder(mlflow: Any, folder: str) -> dict[str, Any]:
    from mlflow.models import Model

    model = Model.load(os.path.join(folder, "MLmodel"))
    pyfunc = model.flavors.get("python_function")
    if pyfunc is None:
        raise InvalidData(
            f"the MLflow model at {folder!r} has no python_function flavour, so pyfunc "
            f"cannot predict with it (flavours: {sorted(model.flavors)})"
        )
    meta: dict[str, Any] = {
        "flavors": sorted(model.flavors),
        "loader_module": pyfunc.get("loader_module"),
        "mlflow_version": mlflow.__version__,
    }
    if model.run_id:
        meta["run_id"] = model.run_id
    schema = model.get_input_schema()
    if schema is not None and schema.has_input_names():
        meta["feature_names"] = [str(n) for n in schema.input_names()]
    return meta


def _archive(folder: str, out: Any) -> None:
    """``folder`` as an uncompressed tar (as ``model/...``), the same bytes for the same files."""

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with tarfile.open(fileobj=_Unseekable(out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        root = Path(folder)
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=f"model/{path.relative_to(root)}", recursive=False, filter=plain)


class _Unseekable(io.RawIOBase):
    """Only ``write``: tarfile's stream mode needs no more from the blob writer."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._out.write(bytes(data))
        return len(data)

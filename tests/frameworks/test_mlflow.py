"""``mlflow.model``: MLflow model folders and runs:/ or models:/ URIs, predicted through pyfunc."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

with warnings.catch_warnings():
    # MLflow warns about its own type hints while importing pyfunc (its warning, not ours)
    warnings.simplefilter("ignore")
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature

from omops.errors import InvalidData
from omops.plugins import default_registry
from omops.plugins.mlflow_model import MLflowModel
from omops.runtime.actions import perform

from .conftest import COLUMNS, spy_lane, xy
from .contract import TIMEOUT, ModelContract

pytestmark = [
    # MLflow's own SQLAlchemy store uses an option SQLAlchemy 2.1 deprecates
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:mlflow"),
]


@functools.cache
def classifier(seed: int = 0) -> LogisticRegression:
    X, y = xy(seed=seed)  # noqa: N806
    return LogisticRegression(C=1.0 + seed).fit(X, y)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow-models")


@functools.cache
def _saved(folder: str, seed: int) -> str:
    path = Path(folder) / f"model-{seed}"
    model = classifier(seed)
    X, _ = xy(seed=seed)  # noqa: N806
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        pip_requirements=["scikit-learn"],
    )
    return str(path)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory, quiet_env) -> str:
    """A local tracking store (SQLite) with its artifacts in a folder."""
    root = tmp_path_factory.mktemp("mlflow-tracking")
    return f"sqlite:///{root / 'mlflow.db'}"


class TestModelFolder(ModelContract):
    kind = "mlflow.model"
    extra = "mlflow"
    modules = ("mlflow", "mlflow.pyfunc")

    @pytest.fixture(autouse=True)
    def _folder(self, folders):
        self.folder = str(folders)

    def make(self, seed=0):
        return _saved(self.folder, seed)

    def expected(self, model, X):  # noqa: N803
        if isinstance(model, str):
            return classifier(int(model.rpartition("-")[2])).predict(X)
        return model.predict(X)

    def test_a_stored_model_needs_no_folder_to_serve(self, om, tmp_path):
        import shutil

        copy = shutil.copytree(self.make(), tmp_path / "copy")
        meta = om.models.put(str(copy), "model")
        shutil.rmtree(copy)
        assert meta.kind_meta["flavors"] == ["python_function", "sklearn"]
        X, _ = xy(seed=2)  # noqa: N806
        got = perform(om, "model", "predict", X).result
        assert got.tolist() == classifier(0).predict(X).tolist()
        # read back, it can be put again
        assert om.models.put(om.models.get("model"), "again").kind == self.kind

    def test_signature_enforces_the_inputs(self, om):
        om.models.put(self.make(), "model")
        X, _ = xy()  # noqa: N806
        with pytest.raises(InvalidData, match=r"lacks column\(s\) \['c'\]"):
            perform(om, "model", "predict", X[["a", "b"]])

    def test_a_folder_without_mlmodel_is_not_taken(self, om, tmp_path):
        with pytest.raises(InvalidData, match="path of an existing folder"):
            om.models.put(str(tmp_path), "model")
        with pytest.raises(InvalidData, match="neither an MLflow model folder"):
            om.models.put(str(tmp_path), "model", kind=self.kind)


def test_runs_and_models_uris_from_a_tracking_store(om, tracking, tmp_path, monkeypatch):
    model = classifier(0)
    X, _ = xy()  # noqa: N806
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    client = mlflow.MlflowClient(tracking)
    experiment = client.create_experiment("omops", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        logged = mlflow.sklearn.log_model(
            model,
            name="clf",
            signature=infer_signature(X, model.predict(X)),
            pip_requirements=["scikit-learn"],
            registered_model_name="clf",
        )
    runs_uri = f"runs:/{run.info.run_id}/clf"
    # selected by its string, resolved through the given tracking URI
    assert default_registry().select(runs_uri, "models").kind == "mlflow.model"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    meta = om.models.put(MLflowModel(runs_uri, tracking_uri=tracking), "from-run")
    assert meta.kind == "mlflow.model"
    assert meta.kind_meta["source"] == runs_uri
    assert meta.kind_meta["run_id"] == run.info.run_id
    assert meta.kind_meta["feature_names"] == COLUMNS
    registered = om.models.put(MLflowModel("models:/clf/1", tracking_uri=tracking), "from-registry")
    assert registered.kind_meta["source"] == "models:/clf/1"
    for name in ("from-run", "from-registry"):
        np.testing.assert_array_equal(perform(om, name, "predict", X).result, model.predict(X))
    assert logged.model_uri  # logged through the same store
    with pytest.raises(InvalidData, match="MLflow cannot find 'runs:/nope/clf'"):
        om.models.put(MLflowModel("runs:/nope/clf", tracking_uri=tracking), "missing")


def test_served_by_workers_too(fw_celery, folders):
    om = fw_celery.omega()
    X, _ = xy(seed=4)  # noqa: N806
    om.models.put(_saved(str(folders), 1), "model")
    om.datasets.put(X, "inputs")
    got = om.runtime.require(fw_celery.queue).model("model").predict("inputs").get(timeout=TIMEOUT)
    assert got == classifier(1).predict(X).tolist()


# -- the array lane: the flavour's answer without checking the schema twice --------------------


@pytest.fixture
def laned(monkeypatch):
    """The actions the MLflow plugin's array lane performed."""
    from omops.plugins.mlflow_model import MLflowPlugin

    return spy_lane(monkeypatch, MLflowPlugin)


@functools.cache
def _saved_as(folder: str, method: str) -> str:
    """The classifier saved with pyfunc predicting through ``method`` (one column or two)."""
    path = Path(folder) / f"model-{method}"
    model = classifier(0)
    X, _ = xy()  # noqa: N806
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, getattr(model, method)(X)),
        pip_requirements=["scikit-learn"],
        pyfunc_predict_fn=method,
    )
    return str(path)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_the_array_lane_answers_as_pyfunc(om, folders, laned, method):
    """1 row and many, columns in any order, floats and integers: pyfunc's own answers."""
    from omops.runtime.inputs import JsonBody

    path = _saved_as(str(folders), method)
    om.models.put(path, "model")
    pyfunc = mlflow.pyfunc.load_model(path)
    X, _ = xy(n=30, seed=9)  # noqa: N806
    for frame in (X.iloc[:1], X):
        want = pyfunc.predict(frame)
        shuffled = frame[["b", "c", "a"]]
        body = JsonBody({"columns": list(shuffled.columns), "data": shuffled.values.tolist()})
        for _ in range(3):  # the first answer is checked against the usual path's
            got = perform(om, "model", "predict", body).result
            assert type(got) is type(want) and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert laned == ["predict"] * 6
    # integers for a double schema: pyfunc refuses them, and so does every request
    ints = JsonBody({"columns": COLUMNS, "data": [[1, 2, 3]]})
    for _ in range(3):
        with pytest.raises(InvalidData, match="Can not safely convert int64 to float64"):
            perform(om, "model", "predict", ints)


class DtypesOf(BaseEstimator):
    """Predicts the dtype of each column it is given, for each row."""

    def fit(self, X, y=None):  # noqa: N803
        return self

    def predict(self, X):  # noqa: N803
        return np.array([str(t) for t in X.dtypes] * len(X)).reshape(len(X), -1)


@pytest.mark.parametrize(
    ("example", "laned_too"),
    [
        ({"a": [1, 2], "b": [3, 4]}, True),  # long columns: int64 arrays
        ({"a": [1.0, 2.0], "b": [3, 4]}, False),  # a double and a long column
    ],
)
def test_the_lane_keeps_what_the_schema_enforces(om, tmp_path, laned, example, laned_too):
    """A model gets the dtypes its schema says, on the lane or not; mixed schemas are not laned."""
    import pandas as pd

    from omops.runtime.inputs import JsonBody

    frame = pd.DataFrame(example)
    path = tmp_path / "dtypes"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint that integer columns cannot hold NaN
        signature = infer_signature(frame)
    mlflow.sklearn.save_model(
        DtypesOf().fit(frame),
        str(path),
        signature=signature,
        pip_requirements=["scikit-learn"],
        skops_trusted_types=[f"{DtypesOf.__module__}.{DtypesOf.__qualname__}"],
    )
    assert om.models.put(str(path), "model").kind_meta["feature_names"] == ["a", "b"]
    want = mlflow.pyfunc.load_model(str(path)).predict(frame)
    body = JsonBody(frame.to_dict("records"))  # 1.0 a float, 3 an integer
    for _ in range(3):
        np.testing.assert_array_equal(perform(om, "model", "predict", body).result, want)
    assert laned == (["predict"] * 3 if laned_too else [])
    with pytest.raises(InvalidData, match="could not predict"):  # floats for longs, every time
        for _ in range(3):
            perform(om, "model", "predict", JsonBody({"columns": ["a", "b"], "data": [[0.5, 1.5]]}))

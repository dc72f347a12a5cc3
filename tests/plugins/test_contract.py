import functools
import io
import sys
import textwrap
import uuid
import zipfile
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from omops.blobs import Blobs
from omops.errors import InvalidData, PluginError
from omops.omega import Omega
from omops.plugins import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    SUPPORTS_ORDER,
    Plugin,
    PluginSpec,
    ReadQuery,
    Registry,
    Stored,
    default_registry,
)
from omops.plugins import registry as registry_module
from omops.plugins.package import Wheel


@pytest.fixture(scope="module")
def shared_om(tmp_path_factory):
    """Plugins do not depend on the catalog backend: one SQLite catalog serves this module."""
    root = tmp_path_factory.mktemp("plugins")
    om = Omega(catalog=f"sqlite:///{root / 'catalog.sqlite'}", blobs=str(root / "blobs"))
    yield om
    om.catalog.close()


@pytest.fixture
def local_om(shared_om):
    """A bucket of its own for each test, so that names never meet."""
    return shared_om[f"t{uuid.uuid4().hex}"]


# -- the contract every kind passes ---------------------------------------------


class PluginContract:
    """Shared checks; each subclass names a kind and makes objects of it."""

    kind: str
    store = "datasets"
    selected_automatically = True
    #: Kinds that link to data elsewhere store no parts, and are read with these options.
    links = False
    read: dict = {}

    def make(self, seed=0):
        raise NotImplementedError

    def assert_same(self, got, want):
        raise NotImplementedError

    def put(self, om, obj, name, **kwargs):
        if not self.selected_automatically:
            kwargs.setdefault("kind", self.kind)
        return getattr(om, self.store).put(obj, name, **kwargs)

    def test_kind_is_registered(self):
        assert self.kind in BUILTIN
        plugin = default_registry().get(self.kind)
        assert isinstance(plugin, Plugin)
        assert plugin.kind == self.kind
        assert self.store in plugin.stores

    def test_put_get_roundtrip(self, local_om):
        obj = self.make()
        self.put(local_om, obj, "thing")
        self.assert_same(getattr(local_om, self.store).get("thing", **self.read), obj)

    def test_plugin_roundtrip_without_a_catalog(self, tmp_path):
        plugin = default_registry().get(self.kind)
        blobs = Blobs(str(tmp_path / "blobs"))
        obj = self.make()
        stored = plugin.put(obj, blobs)
        assert isinstance(stored, Stored)
        assert bool(stored.parts) != self.links
        for part in stored.parts:
            assert blobs.exists(part.blob)
            assert part.size == len(blobs.read(part.blob))
        query = ReadQuery(options=self.read)
        self.assert_same(plugin.get(blobs, stored.parts, stored.kind_meta, query=query), obj)

    def test_metadata_records_the_kind(self, local_om):
        meta = self.put(local_om, self.make(), "thing")
        assert meta.kind == self.kind
        stored = getattr(local_om, self.store).metadata("thing")
        assert stored.kind == self.kind
        assert (stored.size > 0) != self.links
        assert stored.revision == meta.revision
        assert getattr(local_om, self.store).list(kind=self.kind) == ["thing"]

    def test_each_put_creates_a_revision(self, local_om):
        repo = getattr(local_om, self.store)
        first = self.put(local_om, self.make(0), "thing", append=False)
        second = self.put(local_om, self.make(1), "thing", append=False)
        assert first.revision != second.revision
        assert [r for r, _ in repo.revisions("thing")] == [first.revision, second.revision]
        self.assert_same(repo.get("thing", revision=first.revision, **self.read), self.make(0))
        self.assert_same(repo.get("thing", **self.read), self.make(1))

    def test_supports_picks_this_kind_without_kind(self, local_om):
        obj = self.make()
        if not self.selected_automatically:
            pytest.fail("subclass must override this check")  # pragma: no cover
        assert default_registry().select(obj, self.store).kind == self.kind
        assert getattr(local_om, self.store).put(obj, "auto").kind == self.kind

    def test_explicit_kind_is_honoured(self, local_om):
        meta = getattr(local_om, self.store).put(self.make(), "explicit", kind=self.kind)
        assert meta.kind == self.kind


def assert_frame_exact(got, want, *, index_type=True):
    """Equal values, dtypes, categories (with their order) and, by default, index class.

    Filtered or appended reads pass ``index_type="equiv"``: pandas itself turns a
    RangeIndex into an Index (or a stepped RangeIndex) there, so only values count.
    """
    pd.testing.assert_frame_equal(
        got,
        want,
        check_exact=True,
        check_index_type=index_type,
        check_column_type=True,
        check_categorical=True,
    )


class TestDataFrame(PluginContract):
    kind = "pandas.dataframe"

    def make(self, seed=0):
        return pd.DataFrame({"a": [seed, 1, 2], "b": ["x", "y", "z"], "c": [0.5, 1.5, np.nan]})

    def assert_same(self, got, want):
        pd.testing.assert_frame_equal(got, want, check_exact=True)


class TestDaskDataFrame(PluginContract):
    """Stored part by part (here by Dask's threads); read back as pandas."""

    kind = "dask.dataframe"

    def make(self, seed=0):
        import dask.dataframe as dd

        frame = pd.DataFrame({"a": [seed, 1, 2, 3], "b": list("wxyz"), "c": [0.5, 1.5, np.nan, 2]})
        return dd.from_pandas(frame, npartitions=2)

    def assert_same(self, got, want):
        pd.testing.assert_frame_equal(got, want.compute(), check_exact=True)


class TestSeries(PluginContract):
    kind = "pandas.series"

    def make(self, seed=0):
        return pd.Series([seed, 1.5, np.nan], name="price", index=pd.Index(list("abc"), name="k"))

    def assert_same(self, got, want):
        pd.testing.assert_series_equal(got, want, check_exact=True)

    def test_unnamed_series_comes_back_unnamed(self, local_om):
        series = pd.Series([1, 2, 3])
        local_om.datasets.put(series, "unnamed")
        pd.testing.assert_series_equal(local_om.datasets.get("unnamed"), series)


class TestNdarray(PluginContract):
    kind = "numpy.ndarray"

    def make(self, seed=0):
        return np.arange(12, dtype="float64").reshape(3, 4) + seed

    def assert_same(self, got, want):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize(
        "array",
        [
            np.array([1, 2, 3], dtype="int8"),
            np.array([[True, False]]),
            np.array(["a", "bc"]),
            np.array(["2024-01-01T00:00:00.000000001"], dtype="datetime64[ns]"),
            np.zeros((2, 0, 3)),
            np.array(3.5),
            np.asfortranarray(np.arange(6).reshape(2, 3)),
        ],
        ids=["int8", "bool", "unicode", "datetime64", "empty", "0d", "fortran"],
    )
    def test_dtypes_and_shapes(self, local_om, array):
        meta = local_om.datasets.put(array, "arr")
        assert meta.details == {"shape": list(array.shape), "dtype": str(array.dtype)}
        self.assert_same(local_om.datasets.get("arr"), array)

    def test_object_arrays_are_refused(self, local_om):
        with pytest.raises(InvalidData, match="dtype object"):
            local_om.datasets.put(np.array([{"a": 1}, None], dtype=object), "obj")
        assert local_om.datasets.list() == []


class TestNotebook(PluginContract):
    kind = "notebook.ipynb"
    store = "jobs"

    def make(self, seed=0):
        import nbformat

        cells = [nbformat.v4.new_code_cell(f"x = {seed}"), nbformat.v4.new_markdown_cell("# hi")]
        return nbformat.v4.new_notebook(cells=cells)

    def assert_same(self, got, want):
        import nbformat

        assert isinstance(got, nbformat.NotebookNode)
        assert [(c.cell_type, c.source) for c in got.cells] == [
            (c.cell_type, c.source) for c in want.cells
        ]


class TestSqlConnection(PluginContract):
    """A SQLite file per seed: table ``t`` holds the seed."""

    kind = "sql.connection"
    links = True
    read = {"table": "t"}

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.folder = tmp_path

    def make(self, seed=0):
        import sqlite3

        path = self.folder / f"db{seed}.sqlite"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            conn.execute("DELETE FROM t")
            conn.execute("INSERT INTO t VALUES (?)", (seed,))
        conn.close()
        return f"sqlite:///{path}"

    def assert_same(self, got, want):
        seed = int(want.rsplit("db", 1)[1].split(".")[0])
        assert got.to_dict("records") == [{"x": seed}]


class TestUrlDataset(PluginContract):
    """A CSV file per seed, as a file:// URL."""

    kind = "url.dataset"
    links = True

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path):
        self.folder = tmp_path

    def make(self, seed=0):
        path = self.folder / f"d{seed}.csv"
        path.write_text(f"x,y\n{seed},a\n")
        return f"file://{path}"

    def assert_same(self, got, want):
        seed = int(want.rsplit("/d", 1)[1].split(".")[0])
        assert got.to_dict("records") == [{"x": seed, "y": "a"}]


class TestJson(PluginContract):
    kind = "python.json"

    def make(self, seed=0):
        return {"seed": seed, "nested": {"list": [1, 2.5, "x", True, None]}, "u": "\u00e9"}

    def assert_same(self, got, want):
        assert got == want
        assert type(got) is type(want)

    @pytest.mark.parametrize("value", [[1, 2, 3], "text", 42, 1.25, True, False, [], {}])
    def test_plain_values(self, local_om, value):
        assert local_om.datasets.put(value, "v").kind == self.kind
        got = local_om.datasets.get("v")
        assert got == value
        assert type(got) is type(value)

    def test_json_is_stored_in_every_store(self, local_om):
        # om.streams appends records instead (tests/test_streams.py)
        for store in ("datasets", "models", "jobs", "scripts"):
            assert getattr(local_om, store).put({"s": store}, "conf").kind == self.kind

    def test_unserializable_value_is_refused(self, local_om):
        with pytest.raises(InvalidData, match="python.pickle"):
            local_om.datasets.put({"a": object()}, "bad")
        assert local_om.datasets.list() == []


URLS = [
    ("postgresql://ana:s3cret@db:5432/sales", "'postgresql://ana:***@db:5432/sales'"),
    ("mysql+pymysql://u:pw@h/db", "'mysql+pymysql://u:***@h/db'"),
    ("sqlite:////tmp/x.sqlite", "'sqlite:////tmp/x.sqlite'"),
    ("https://example.com/data.csv", "'https://example.com/data.csv'"),
    ("http://u:pw@example.com/d.csv", "'http://u:***@example.com/d.csv'"),
    ("s3://bucket/data.parquet?token=abc", "?token=***"),
    ("gs://bucket/data.parquet", "'gs://bucket/data.parquet'"),
    ("file:///data/x.csv", "'file:///data/x.csv'"),
    ("  ftp://host/x  ", "'ftp://host/x'"),
]


@pytest.mark.parametrize(("text", "shown"), URLS)
@pytest.mark.parametrize("store", ["scripts", "jobs", "models"])
def test_a_url_is_never_stored_as_json_silently(local_om, store, text, shown):
    repository = getattr(local_om, store)
    with pytest.raises(InvalidData) as info:
        repository.put(text, "link")
    message = str(info.value)
    assert f"{shown}" in message and " looks like a" in message
    assert "stored in om.datasets (kinds sql.connection, url.dataset)" in message
    assert "kind='python.json'" in message
    assert "s3cret" not in message and ":pw@" not in message and "abc" not in message
    assert repository.list() == []


@pytest.mark.parametrize(("text", "shown"), URLS)
def test_datasets_link_urls_or_say_why_not(local_om, text, shown):
    """Links without secrets become their kinds; secrets and unread schemes are refused."""
    try:
        meta = local_om.datasets.put(text, "link")
    except InvalidData as exc:
        message = str(exc)
        assert shown in message
        assert "s3cret" not in message and ":pw@" not in message and "abc" not in message
        assert "literal secret" in message or "scheme 'ftp' cannot be read" in message
        assert local_om.datasets.list() == []
    else:
        assert meta.kind == ("sql.connection" if "sql" in text else "url.dataset")
        assert meta.kind_meta["url"] == text.strip()


@pytest.mark.parametrize(
    ("store", "advice"),
    [
        ("datasets", "pd.read_csv(path)"),
        ("models", "joblib.load(path)"),
        ("jobs", "om.jobs stores notebooks: give the path of a .ipynb file"),
    ],
)
def test_an_existing_path_is_never_stored_as_json_silently(
    local_om, tmp_path, monkeypatch, store, advice
):
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "pkg").mkdir()
    monkeypatch.chdir(tmp_path)
    repository = getattr(local_om, store)
    for text, place in (
        (str(tmp_path / "data.csv"), "file"),
        ("data.csv", "file"),  # relative to the working folder
        ("./pkg", "folder"),
        (str(tmp_path), "folder"),
    ):
        with pytest.raises(InvalidData, match="python.json") as info:
            repository.put(text, "path")
        message = str(info.value)
        assert message.startswith(repr(text)[:40])
        assert f" looks like the path of an existing {place}; " in message and advice in message
    assert repository.list() == []


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "no such file.csv",
        "see https://example.com for details",  # text that mentions a URL
        "key: value://x y",
        "line one\nline two",
        "",
    ],
)
def test_other_strings_are_still_json(local_om, text):
    assert local_om.datasets.put(text, "t").kind == "python.json"
    assert local_om.datasets.get("t") == text


def test_explicit_json_kind_stores_any_string(local_om, tmp_path):
    for text in ("postgresql://ana:s3cret@db/sales", "https://example.com/x.csv", str(tmp_path)):
        assert local_om.scripts.put(text, "t", kind="python.json").kind == "python.json"
        assert local_om.scripts.get("t") == text


def test_urls_inside_json_values_are_data(local_om):
    value = {"source": "https://example.com/data.csv", "db": "postgresql://db/x"}
    assert local_om.datasets.put(value, "conf").kind == "python.json"
    assert local_om.datasets.get("conf") == value


def test_location_names_what_a_string_points_at(tmp_path):
    from omops.plugins.simple import location

    (tmp_path / "f.txt").write_text("x")
    assert location("postgresql+psycopg://u:p@h/db") == "connection"
    assert location("SNOWFLAKE://{user}:{password}@{account}") == "connection"
    assert location("az://container/x.parquet") == "url"
    assert location(str(tmp_path / "f.txt")) == "file"
    assert location(str(tmp_path)) == "folder"
    assert location(str(tmp_path / "missing.txt")) is None
    assert location("x" * 5000) is None
    assert location("a\0b") is None
    assert location(42) is None


class Thing:
    """Not JSON, not a frame, not an array: only a pickle stores it."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Thing) and other.value == self.value

    __hash__ = None


def _wheel(seed: int) -> Wheel:
    """A minimal wheel made by hand (the same bytes for the same seed): no build needed."""
    buffer = io.BytesIO()
    files = {
        "tiny/__init__.py": f"def run(om, **kw):\n    return {seed}\n",
        "tiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n",
        "tiny-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "tiny-1.0.dist-info/RECORD": "",
    }
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return Wheel("tiny-1.0-py3-none-any.whl", buffer.getvalue())


class TestPackage(PluginContract):
    kind = "python.package"
    store = "scripts"

    def make(self, seed=0):
        return _wheel(seed)

    def assert_same(self, got, want):
        assert isinstance(got, Wheel)
        assert got == want

    def test_metadata_describes_the_package(self, local_om):
        meta = local_om.scripts.put(self.make(), "tiny")
        assert {k: meta.details[k] for k in ("package", "version", "entry")} == {
            "package": "tiny",
            "version": "1.0",
            "entry": "tiny:run",
        }

    def test_only_scripts_take_packages(self, local_om):
        with pytest.raises(PluginError, match="scripts"):
            local_om.models.put(self.make(), "tiny", kind=self.kind)


class TestPickle(PluginContract):
    kind = "python.pickle"
    selected_automatically = False

    def make(self, seed=0):
        return Thing({"seed": seed, "set": {1, 2}})

    def assert_same(self, got, want):
        assert got == want

    def test_supports_picks_this_kind_without_kind(self, local_om):
        # never auto-selected: not for objects only a pickle can store ...
        with pytest.raises(PluginError, match="kind='python.pickle'"):
            default_registry().select(self.make(), "datasets")
        with pytest.raises(PluginError, match="kind='python.pickle'"):
            local_om.datasets.put(self.make(), "auto")
        assert local_om.datasets.list() == []
        # ... and not for anything else either
        assert "python.pickle" not in SUPPORTS_ORDER
        assert "python.pickle" not in default_registry().order
        for obj in (self.make(), {"a": 1}, [1], 1, "s", None, (1, 2), {1, 2}, b"x"):
            assert not default_registry().get("python.pickle").supports(obj)
            try:
                chosen = default_registry().select(obj, "models").kind
            except PluginError:
                chosen = None
            assert chosen != "python.pickle"

    def test_pickle_stores_anything_picklable_when_asked(self, local_om):
        for value in [(1, 2), {1, 2}, b"bytes", None, pd.Timestamp("2024-01-01")]:
            local_om.models.put(value, "p", kind="python.pickle")
            assert local_om.models.get("p") == value

    def test_unpicklable_is_refused(self, local_om):
        with pytest.raises(InvalidData, match="cannot pickle"):
            local_om.models.put(lambda x: x, "fn", kind="python.pickle")


def _xy():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = (X["a"] + X["b"] > 0).astype(int)
    return X, y


class SklearnContract(PluginContract):
    kind = "sklearn.joblib"
    store = "models"

    def assert_same(self, got, want):
        assert type(got) is type(want)
        assert got.get_params(deep=False).keys() == want.get_params(deep=False).keys()
        X, _ = _xy()
        np.testing.assert_array_equal(got.predict(X), want.predict(X))
        np.testing.assert_array_equal(got.predict_proba(X), want.predict_proba(X))

    def test_kind_meta_describes_the_estimator(self, local_om):
        meta = local_om.models.put(self.make(), "model")
        model = type(self.make())
        assert meta.details["estimator"] == f"{model.__module__}.{model.__qualname__}"
        assert meta.details["feature_names"] == ["a", "b", "c"]
        assert meta.details["n_features"] == 3
        assert "sklearn_version" in meta.kind_meta

    def test_models_are_not_datasets(self, local_om):
        with pytest.raises(PluginError):
            local_om.datasets.put(self.make(), "model")
        with pytest.raises(PluginError, match="cannot be stored in datasets"):
            local_om.datasets.put(self.make(), "model", kind=self.kind)
        assert local_om.datasets.list() == []

    def test_models_cannot_be_appended(self, local_om):
        with pytest.raises(InvalidData, match="cannot be appended"):
            local_om.models.put(self.make(), "model", append=True)


@functools.cache
def fitted(pipeline, seed):
    """Fitted once per session; the tests only read these models."""
    X, y = _xy()
    clf = LogisticRegression(C=1.0 + seed)
    model = Pipeline([("scale", StandardScaler()), ("clf", clf)]) if pipeline else clf
    return model.fit(X, y)


class TestSklearnEstimator(SklearnContract):
    def make(self, seed=0):
        return fitted(False, seed)


class TestSklearnPipeline(SklearnContract):
    def make(self, seed=0):
        return fitted(True, seed)

    def assert_same(self, got, want):
        super().assert_same(got, want)
        assert [name for name, _ in got.steps] == ["scale", "clf"]

    def test_unfitted_pipeline(self, local_om):
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
        meta = local_om.models.put(pipe, "unfitted")
        assert "feature_names" not in meta.details
        got = local_om.models.get("unfitted")
        assert isinstance(got, Pipeline)
        assert got.get_params()["clf__C"] == 1.0


def test_every_builtin_kind_has_a_contract_subclass():
    covered = {
        cls.kind
        for cls in (
            TestDataFrame,
            TestDaskDataFrame,
            TestSeries,
            TestNdarray,
            TestJson,
            TestPickle,
            TestSklearnEstimator,
            TestSklearnPipeline,
            TestPackage,
            TestNotebook,
            TestSqlConnection,
            TestUrlDataset,
        )
    }
    # the model frameworks' kinds have theirs in tests/frameworks (a pytest process of their own)
    framework_extras = {"keras", "lightgbm", "mlflow", "onnx", "r", "torch", "xgboost"}
    frameworks = {kind for kind, spec in BUILTIN.items() if spec.extra in framework_extras}
    assert covered == set(BUILTIN) - frameworks


# -- exact DataFrame round trips --------------------------------------------------


def rich_frame(start=0, n=6, index=None):
    rows = range(start, start + n)
    frame = pd.DataFrame(
        {
            "tz": pd.DatetimeIndex(
                [
                    pd.Timestamp("2024-03-10 01:59:59.123456789", tz="America/New_York")
                    + pd.Timedelta(hours=i)
                    for i in rows
                ]
            ),
            "naive": pd.DatetimeIndex(
                [pd.Timestamp("2024-01-01 00:00:00.000000001") + pd.Timedelta(days=i) for i in rows]
            ),
            "cat": pd.Categorical(
                [["b", "a", "c"][i % 3] for i in rows], categories=["c", "b", "a"]
            ),
            "ocat": pd.Categorical(
                [["lo", "hi"][i % 2] for i in rows], categories=["lo", "mid", "hi"], ordered=True
            ),
            "Int": pd.array([i if i % 2 else None for i in rows], dtype="Int64"),
            "Bool": pd.array([bool(i % 2) if i % 3 else None for i in rows], dtype="boolean"),
            "Str": pd.array([f"s{i}" if i % 3 else None for i in rows], dtype="string"),
            "f": [float(i) + 0.1 if i % 2 else np.nan for i in rows],
            "i": list(rows),
        },
        index=pd.RangeIndex(start, start + n),
    )
    if index is not None:
        frame.index = index
    return frame


INDEXES = {
    "range": None,
    "range_step": pd.RangeIndex(10, 70, 10),
    "named": pd.Index(list("uvwxyz"), name="key"),
    "unnamed_int": pd.Index([5, 3, 9, 1, 7, 0]),
    "named_datetime_tz": pd.DatetimeIndex(
        pd.date_range("2024-01-01", periods=6, tz="UTC"), freq=None, name="when"
    ),
}


@pytest.mark.parametrize("index", list(INDEXES))
def test_rich_frame_roundtrip_is_exact(local_om, index):
    frame = rich_frame(index=INDEXES[index])
    local_om.datasets.put(frame, "rich")
    got = local_om.datasets.get("rich")
    assert_frame_exact(got, frame)


def test_dtypes_survive_exactly(local_om):
    frame = rich_frame()
    local_om.datasets.put(frame, "rich")
    got = local_om.datasets.get("rich")
    assert got.dtypes.to_dict() == frame.dtypes.to_dict()
    assert str(got["tz"].dtype) == "datetime64[ns, America/New_York]"
    assert got["tz"].iloc[0].nanosecond == 789
    assert got["naive"].iloc[0].nanosecond == 1
    assert list(got["cat"].cat.categories) == ["c", "b", "a"]
    assert not got["cat"].cat.ordered
    assert list(got["ocat"].cat.categories) == ["lo", "mid", "hi"]
    assert got["ocat"].cat.ordered
    assert got["Int"].isna().sum() == 3
    assert got["f"].isna().sum() == 3


def test_exact_after_filtering(local_om):
    frame = rich_frame(index=INDEXES["named"])
    local_om.datasets.put(frame, "rich")
    got = local_om.datasets.get("rich", i__gte=2)
    assert_frame_exact(got, frame[frame.i >= 2])
    got = local_om.datasets.get("rich", Int__notnull=True)
    assert_frame_exact(got, frame[frame.Int.notna()])
    got = local_om.datasets.get("rich", cat="a")
    want = frame[frame.cat == "a"]
    assert_frame_exact(got, want)
    assert list(got["cat"].cat.categories) == ["c", "b", "a"]  # unused categories stay


def test_exact_after_filtering_unnamed_index(local_om):
    frame = rich_frame()
    local_om.datasets.put(frame, "rich")
    got = local_om.datasets.get("rich", ocat="hi")
    assert_frame_exact(got, frame[frame.ocat == "hi"], index_type="equiv")


def test_exact_after_column_selection(local_om):
    frame = rich_frame(index=INDEXES["named"])
    local_om.datasets.put(frame, "rich")
    assert_frame_exact(local_om.datasets.get("rich[ocat,tz]"), frame[["ocat", "tz"]])
    assert_frame_exact(local_om.datasets.get("rich[^tz]"), frame.drop(columns="tz"))


def test_exact_after_append(local_om):
    first = rich_frame(0, 6, index=pd.Index(list("abcdef"), name="key"))
    second = rich_frame(6, 4, index=pd.Index(list("ghij"), name="key"))
    local_om.datasets.put(first, "rich")
    local_om.datasets.put(second, "rich")
    want = pd.concat([first, second])
    assert_frame_exact(local_om.datasets.get("rich"), want)
    assert_frame_exact(local_om.datasets.get("rich", i__between=(4, 7)), want[want.i.between(4, 7)])


def test_append_with_range_index_reads_like_concat(local_om):
    first, second = rich_frame(0, 3), rich_frame(3, 3)
    local_om.datasets.put(first, "rich")
    local_om.datasets.put(second, "rich")
    pd.testing.assert_frame_equal(
        local_om.datasets.get("rich"), pd.concat([first, second]), check_exact=True
    )


def test_append_merges_new_categories_in_order(local_om):
    first = pd.DataFrame({"c": pd.Categorical(["x", "y"], categories=["y", "x"])})
    second = pd.DataFrame({"c": pd.Categorical(["z", "x"], categories=["x", "z"])})
    local_om.datasets.put(first, "cats")
    local_om.datasets.put(second, "cats")
    got = local_om.datasets.get("cats")
    assert list(got["c"].cat.categories) == ["y", "x", "z"]
    assert got["c"].astype(str).tolist() == ["x", "y", "z", "x"]


def test_append_with_other_columns_is_refused(local_om):
    local_om.datasets.put(pd.DataFrame({"a": [1]}), "df")
    with pytest.raises(InvalidData, match="cannot append"):
        local_om.datasets.put(pd.DataFrame({"b": [1]}), "df")
    pd.testing.assert_frame_equal(local_om.datasets.get("df"), pd.DataFrame({"a": [1]}))
    local_om.datasets.put(pd.DataFrame({"b": [1]}), "df", append=False)
    pd.testing.assert_frame_equal(local_om.datasets.get("df"), pd.DataFrame({"b": [1]}))


def test_frames_that_cannot_be_stored_are_refused(local_om):
    with pytest.raises(InvalidData, match="duplicate column"):
        local_om.datasets.put(pd.DataFrame([[1, 2]], columns=["a", "a"]), "dup")
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")]))
    with pytest.raises(InvalidData, match="MultiIndex"):
        local_om.datasets.put(multi, "multi")
    with pytest.raises(InvalidData, match="python.pickle"):
        local_om.datasets.put(pd.DataFrame({"a": [1, "x"]}), "mixed")
    assert local_om.datasets.list() == []


# -- the registry --------------------------------------------------------------------


def test_builtin_table_and_order_are_read_only():
    assert isinstance(BUILTIN, MappingProxyType)
    with pytest.raises(TypeError):
        BUILTIN["x.kind"] = PluginSpec("x:Y")  # type: ignore[index]
    assert SUPPORTS_ORDER == (
        "pandas.dataframe",
        "pandas.series",
        "dask.dataframe",
        "numpy.ndarray",
        "mlflow.model",
        "xgboost.model",
        "lightgbm.model",
        "sklearn.joblib",
        "keras.model",
        "torch.module",
        "onnx.model",
        "r.model",
        "python.package",
        "notebook.ipynb",
        "sql.connection",
        "url.dataset",
        "python.json",
    )
    assert default_registry().order[: len(SUPPORTS_ORDER)] == SUPPORTS_ORDER
    assert default_registry() is default_registry()


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(PluginError) as info:
        default_registry().get("no.such.kind")
    message = str(info.value)
    assert "'no.such.kind' is not known" in message
    for kind in BUILTIN:
        assert kind in message


def test_unknown_kind_on_put(local_om):
    with pytest.raises(PluginError, match="not known"):
        local_om.datasets.put({"a": 1}, "x", kind="no.such.kind")
    assert local_om.datasets.list() == []


def test_unsupported_object_names_its_type_and_the_way_out():
    with pytest.raises(PluginError) as info:
        default_registry().select(Thing(1), "datasets")
    assert "test_contract.Thing" in str(info.value)
    assert "kind=" in str(info.value)


@pytest.mark.parametrize("store", ["datasets", "models", "jobs", "scripts"])
def test_unsupported_object_suggests_only_kinds_the_store_accepts(store):
    registry = default_registry()
    with pytest.raises(PluginError) as info:
        registry.select(Thing(1), store)
    message = str(info.value)
    suggested = message.partition(f"kinds {store} accepts (")[2].partition(")")[0].split(", ")
    accepted = [kind for kind in registry.kinds if store in registry.get(kind).stores]
    assert suggested == accepted == list(registry.kinds_for(store))
    assert "python.pickle" in suggested


def test_a_frame_put_in_models_is_pointed_to_datasets(local_om):
    with pytest.raises(PluginError) as info:
        local_om.models.put(pd.DataFrame({"a": [1]}), "m")
    message = str(info.value)
    assert "kind 'pandas.dataframe' in datasets stores it" in message
    assert "(keras.model, lightgbm.model, mlflow.model, onnx.model, python.json, " in message
    assert "python.pickle, r.model, sklearn.joblib, torch.module, xgboost.model)" in message
    assert "numpy.ndarray" not in message and "pandas.series" not in message
    with pytest.raises(PluginError, match=r"'sklearn.joblib' in models stores it"):
        local_om.datasets.put(LogisticRegression(), "clf")


def test_kinds_for_leaves_out_kinds_that_cannot_load():
    registry = Registry({**BUILTIN, "broken.kind": "no_such_module_xyz:Plugin"}, SUPPORTS_ORDER)
    assert "broken.kind" not in registry.kinds_for("datasets")
    assert "pandas.dataframe" in registry.kinds_for("datasets")


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A third-party plugin module on sys.path, never imported yet."""
    name = f"omops_fake_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent("""
        from omops.plugins import Plugin, Stored
        from omops.catalog import PartRecord


        class Box:
            def __init__(self, text):
                self.text = text


        class BoxPlugin(Plugin):
            kind = "fake.box"
            stores = ("datasets",)

            @classmethod
            def supports(cls, obj):
                return isinstance(obj, Box)

            def put(self, obj, blobs, *, base=None):
                data = obj.text.encode()
                return Stored([PartRecord(blob=blobs.put_bytes(data), size=len(data))], {})

            def get(self, blobs, parts, kind_meta, *, query=None):
                return Box(blobs.read(parts[0].blob).decode())


        class NotAPlugin:
            pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_custom_spec_is_imported_lazily_and_selected(plugin_module, tmp_path):
    registry = Registry(
        {**BUILTIN, "fake.box": f"{plugin_module}:BoxPlugin"}, (*SUPPORTS_ORDER, "fake.box")
    )
    assert plugin_module not in sys.modules  # building the registry imports nothing
    assert "fake.box" in registry.kinds
    plugin = registry.get("fake.box")
    assert plugin_module in sys.modules
    assert registry.get("fake.box") is plugin
    box = sys.modules[plugin_module].Box("hello")
    assert registry.select(box, "datasets") is plugin
    om = Omega(
        catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"), plugins=registry
    )
    try:
        assert om.datasets.put(box, "box").kind == "fake.box"
        assert om.datasets.get("box").text == "hello"
    finally:
        om.catalog.close()


def test_missing_module_gives_the_pip_hint():
    registry = Registry({"fake.kind": PluginSpec("omops_no_such_module:X", extra="fake")}, [])
    with pytest.raises(PluginError) as info:
        registry.get("fake.kind")
    assert "pip install 'omops[fake]'" in str(info.value)
    assert "fake.kind" in str(info.value)
    assert info.value.__cause__ is None  # raised "from None": one clear message


def test_missing_class_and_non_plugin_class(plugin_module):
    registry = Registry({"a": f"{plugin_module}:Nope", "b": f"{plugin_module}:NotAPlugin"}, [])
    with pytest.raises(PluginError, match="does not exist"):
        registry.get("a")
    with pytest.raises(PluginError, match="not an omops Plugin subclass"):
        registry.get("b")


def test_order_must_name_known_kinds():
    with pytest.raises(PluginError, match="unknown kinds"):
        Registry({"a": "x:Y"}, ["a", "b"])


def test_kind_in_the_wrong_store_is_refused():
    with pytest.raises(PluginError, match="cannot be stored in models"):
        default_registry().select(pd.DataFrame(), "models", kind="pandas.dataframe")


def test_supports_does_not_import_frameworks():
    for kind in SUPPORTS_ORDER:
        cls = type(default_registry().get(kind))
        assert cls.supports(object()) is False


@pytest.fixture
def entry_point_dist(tmp_path, monkeypatch, plugin_module):
    """An installed distribution (a dist-info folder on sys.path) registering a plugin."""

    def install(kind):
        dist = tmp_path / "omops_fake-0.1.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: omops-fake\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(
            f"[{ENTRY_POINT_GROUP}]\n{kind} = {plugin_module}:BoxPlugin\n"
        )
        monkeypatch.setattr(registry_module, "_default", None)  # rebuilt on next use

    yield install


def test_entry_point_plugins_join_the_default_registry(entry_point_dist, plugin_module):
    entry_point_dist("fake.box")
    registry = default_registry()
    assert "fake.box" in registry.kinds
    assert registry.order == (*SUPPORTS_ORDER, "fake.box")
    assert plugin_module not in sys.modules  # registered as a string, not imported
    box = registry.get("fake.box")
    assert registry.select(sys.modules[plugin_module].Box("x"), "datasets") is box


def test_entry_point_cannot_take_a_builtin_kind(entry_point_dist):
    entry_point_dist("pandas.dataframe")
    with pytest.raises(PluginError, match="built-in kind 'pandas.dataframe'"):
        default_registry()

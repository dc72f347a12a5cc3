"""LazyFrame: every operation against what pandas gives for the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omops.errors import InvalidData, InvalidQuery, NotFound
from omops.lazy import LazyFrame
from omops.omega import Omega


def sales(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["eu", "us", "apac"], n),
            "customer": rng.integers(0, 50, n),
            "amount": rng.random(n).round(4) * 100,
            "qty": rng.integers(1, 5, n),
            "kind": pd.Categorical(rng.choice(["a", "b"], n), categories=["b", "a"]),
            "when": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "note": rng.choice(["x", "y", None], n),
        }
    )
    frame.loc[rng.choice(n, 40, replace=False), "amount"] = np.nan
    frame.index = pd.RangeIndex(100, 100 + n, name="row")
    return frame


@pytest.fixture
def data() -> pd.DataFrame:
    return sales()


@pytest.fixture
def lom(tmp_path, data) -> Omega:
    """A local Omega with 'sales' stored in three parts."""
    om = Omega(home=tmp_path)
    for part in np.array_split(np.arange(len(data)), 3):
        om.datasets.put(data.iloc[part], "sales")
    yield om
    om.close()


def test_value_is_what_get_gives_on_each_catalog(om, data):
    om.datasets.put(data.iloc[:700], "sales")
    om.datasets.put(data.iloc[700:], "sales")
    mdf = om.datasets.getl("sales")
    assert isinstance(mdf, LazyFrame)
    assert mdf.columns == list(data.columns) and mdf.index_names == ["row"]
    pd.testing.assert_frame_equal(mdf.value, om.datasets.get("sales"))
    pd.testing.assert_frame_equal(mdf.to_pandas(), data)
    assert len(mdf) == len(data)


def test_filters_have_the_grammar_of_get(lom, data):
    mdf = lom.datasets.getl("sales")
    filters = {"region__in": ["eu", "us"], "amount__gte": 20, "note__isnull": True}
    pd.testing.assert_frame_equal(mdf.query(**filters).value, lom.datasets.get("sales", **filters))
    chained = mdf.query(region="eu").query({"qty__between": (2, 3)}, kind="a")
    expected = data[(data.region == "eu") & data.qty.between(2, 3) & (data.kind == "a")]
    pd.testing.assert_frame_equal(chained.value, expected)
    assert len(chained) == len(expected)
    pd.testing.assert_frame_equal(
        lom.datasets.getl("sales", customer__lt=3).value, data[data.customer < 3]
    )
    with pytest.raises(InvalidQuery, match="unknown column 'nope'"):
        mdf.query(nope=1)
    with pytest.raises(InvalidQuery, match="is not a number"):
        mdf.query(amount__gt="lots")
    with pytest.raises(InvalidQuery, match="unknown operator 'near'"):
        mdf.query(amount__near=1)


def test_columns_series_head_limit_and_sort(lom, data):
    mdf = lom.datasets.getl("sales")
    pd.testing.assert_frame_equal(mdf[["qty", "region"]].value, data[["qty", "region"]])
    pd.testing.assert_frame_equal(
        lom.datasets.getl("sales[^note,when]").value, data.drop(columns=["note", "when"])
    )
    pd.testing.assert_series_equal(mdf["amount"].value, data["amount"])
    pd.testing.assert_frame_equal(mdf.head(3), data.head(3))
    ordered = mdf.sort(["region", "amount"], ascending=[True, False])
    expected = data.sort_values(["region", "amount"], ascending=[True, False], kind="stable")
    got = ordered.value
    assert got["region"].tolist() == expected["region"].tolist()
    assert got["amount"].tolist() == pytest.approx(expected["amount"].tolist(), nan_ok=True)
    assert got["amount"].isna().tolist() == expected["amount"].isna().tolist()  # NaN last
    top = mdf.query(region="us").sort("amount", ascending=False).limit(5).value
    pd.testing.assert_frame_equal(
        top, data[data.region == "us"].sort_values("amount", ascending=False).head(5)
    )
    with pytest.raises(InvalidQuery, match="unknown column"):
        mdf[["nope"]]
    with pytest.raises(InvalidQuery, match="unknown column 'x'"):
        mdf.sort("x")


@pytest.mark.parametrize(
    "function", ["sum", "mean", "min", "max", "count", "nunique", "std", "var", "median"]
)
def test_groupby_aggregations_match_pandas(lom, data, function):
    got = (
        lom.datasets.getl("sales")
        .groupby(["region", "customer"])
        .agg(out=("amount", function))
        .value
    )
    expected = data.groupby(["region", "customer"]).agg(out=("amount", function))
    pd.testing.assert_frame_equal(got, expected, check_dtype=function not in ("count", "nunique"))
    assert got["out"].dtype.kind == expected["out"].dtype.kind


def test_groupby_forms(lom, data):
    mdf = lom.datasets.getl("sales")
    got = (
        mdf.query(region="eu")
        .groupby("customer")
        .agg(total=("amount", "sum"), n=("qty", "size"))
        .value
    )
    expected = (
        data[data.region == "eu"]
        .groupby("customer")
        .agg(total=("amount", "sum"), n=("qty", "size"))
    )
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(
        mdf.groupby("region").agg({"qty": "sum", "amount": "max"}).value,
        data.groupby("region").agg({"qty": "sum", "amount": "max"}),
    )
    pd.testing.assert_series_equal(
        mdf.groupby("region").size().value, data.groupby("region").size().rename("size")
    )
    pd.testing.assert_frame_equal(
        mdf[["region", "qty", "amount"]].groupby("region").sum().value,
        data.groupby("region")[["qty", "amount"]].sum(),
    )
    # groups of missing keys are left out, as in pandas
    pd.testing.assert_frame_equal(
        mdf.groupby("note").agg(n=("qty", "count")).value,
        data.groupby("note").agg(n=("qty", "count")),
    )
    # a grouped result filters and sorts like any frame (its keys are the index)
    big = mdf.groupby("customer").agg(total=("amount", "sum")).query(total__gt=800).sort("total")
    expected = data.groupby("customer").agg(total=("amount", "sum"))
    expected = expected[expected.total > 800].sort_values("total")
    pd.testing.assert_frame_equal(big.value, expected)
    # categorical keys group as their text (sorted as text, not by category order)
    assert mdf.groupby("kind").size().value.index.tolist() == ["a", "b"]
    with pytest.raises(InvalidQuery, match="unknown aggregation 'avg'"):
        mdf.groupby("region").agg(x=("amount", "avg"))
    with pytest.raises(InvalidQuery, match="sum needs a numeric column"):
        mdf.groupby("region").agg(x=("note", "sum"))
    with pytest.raises(InvalidQuery, match=r"takes \(column, function\)"):
        mdf.groupby("region").agg(x="amount")


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_merge_matches_pandas(lom, data, how):
    customers = pd.DataFrame(
        {"customer": [1, 2, 3, 60, None], "name": ["a", "b", "c", "x", "none"], "qty": 1}
    )
    lom.datasets.put(customers, "customers")
    left = lom.datasets.getl("sales")[["customer", "amount", "qty"]].query(customer__lt=5)
    got = left.merge(lom.datasets.getl("customers"), on="customer", how=how).value
    expected = data[data.customer < 5][["customer", "amount", "qty"]].merge(
        customers, on="customer", how=how
    )
    assert (
        list(got.columns)
        == list(expected.columns)
        == ["customer", "amount", "qty_x", "name", "qty_y"]
    )
    order = ["customer", "amount", "qty_x", "name"]
    sort = lambda f: f.sort_values(order, na_position="last").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(sort(got), sort(expected), check_dtype=False)


def test_merge_with_a_dataframe_and_other_keys(lom, data):
    names = pd.DataFrame({"id": [0, 1, 2], "label": ["zero", "one", "two"]})
    got = lom.datasets.getl("sales").merge(
        names, left_on="customer", right_on="id", suffixes=("", "_r")
    )
    expected = data.merge(names, left_on="customer", right_on="id", suffixes=("", "_r"))
    assert got.columns == list(expected.columns)
    key = ["when"]
    pd.testing.assert_frame_equal(
        got.sort(key).value.reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
        check_dtype=False,
        check_categorical=False,
    )
    with pytest.raises(InvalidQuery, match="share no column"):
        lom.datasets.getl("sales").merge(pd.DataFrame({"zz": [1]}))
    with pytest.raises(InvalidQuery, match="how must be"):
        lom.datasets.getl("sales").merge(names, on="customer", how="cross")


def test_iterchunks_sizes_and_order(lom, data):
    mdf = lom.datasets.getl("sales").query(qty__gte=2)
    chunks = list(mdf.iterchunks(300))
    expected = data[data.qty >= 2]
    assert [len(c) for c in chunks] == [300] * (len(expected) // 300) + [len(expected) % 300]
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)
    with pytest.raises(InvalidQuery, match="size must be"):
        next(mdf.iterchunks(0))


def add_total(df: pd.DataFrame) -> None:
    df["total"] = df["amount"] * df["qty"]


def test_transform_in_place_or_returned_and_persisted(lom, data):
    mdf = lom.datasets.getl("sales")
    meta = mdf.transform(add_total, chunksize=300).persist("with_total")
    expected = data.assign(total=data["amount"] * data["qty"])
    pd.testing.assert_frame_equal(lom.datasets.get("with_total"), expected)
    assert meta.rows == len(data) and lom.datasets.revisions("with_total")[-1][1] == ["latest"]
    # results of chunks as they come: one part per chunk (written one at a time)
    parts = lom.catalog.parts(lom.catalog.lookup("default", "datasets", "with_total"))
    assert [p.rows for p in parts] == [300] * 6 + [200]
    small = mdf.transform(lambda df: df[df.qty == 1][["amount"]], chunksize=500)
    pd.testing.assert_frame_equal(small.value, data[data.qty == 1][["amount"]])
    # a transformed frame takes every further operation
    grouped = (
        mdf.transform(add_total, chunksize=700).groupby("region").agg(t=("total", "sum")).value
    )
    pd.testing.assert_frame_equal(grouped, expected.groupby("region").agg(t=("total", "sum")))
    assert len(mdf.transform(lambda df: df.head(1), chunksize=500)) == 4


def test_transform_errors_name_the_chunk(lom):
    mdf = lom.datasets.getl("sales")
    with pytest.raises(InvalidData, match="must return a DataFrame.*got int for chunk 0"):
        mdf.transform(lambda df: 3)
    flips = mdf.transform(
        lambda df: df[["qty"]] if df.index[0] == 100 else df[["amount"]], chunksize=500
    )
    with pytest.raises(InvalidData, match=r"chunk 1 has columns and index \['amount', 'row'\]"):
        flips.to_pandas()
    with pytest.raises(InvalidData, match=r"chunk 1 has columns and index \['amount'"):
        flips.query(qty=1).to_pandas()  # through DuckDB: the same error, not DuckDB's
    with pytest.raises(InvalidQuery, match="chunksize must be"):
        mdf.transform(add_total, chunksize=0)


def test_persist_sql_results_part_by_part(lom, data):
    mdf = lom.datasets.getl("sales")
    meta = mdf.query(region="eu").persist(
        "eu", part_rows=100, tag="v1", attributes={"from": "sales"}
    )
    expected = data[data.region == "eu"]
    pd.testing.assert_frame_equal(lom.datasets.get("eu@v1"), expected)
    assert lom.datasets.metadata("eu").attributes == {"from": "sales"}
    parts = lom.catalog.parts(lom.catalog.lookup("default", "datasets", "eu"))
    assert len(parts) == -(-len(expected) // 100) and meta.rows == len(expected)
    grouped = mdf.groupby(["region", "note"]).agg(n=("qty", "sum")).persist("counts")
    assert grouped.rows == 6
    pd.testing.assert_frame_equal(
        lom.datasets.get("counts"), data.groupby(["region", "note"]).agg(n=("qty", "sum"))
    )
    # an empty result is a dataset with the columns and no rows
    assert mdf.query(qty__gt=100).persist("none").rows == 0
    assert list(lom.datasets.get("none").columns) == list(data.columns)
    # into another bucket; the source is untouched
    mdf.query(customer=1).persist("one", into=lom["prod"].datasets)
    pd.testing.assert_frame_equal(lom["prod"].datasets.get("one"), data[data.customer == 1])
    assert lom.datasets.get("sales").shape == data.shape


def test_the_revision_is_the_one_read(lom, data):
    mdf = lom.datasets.getl("sales")
    lom.datasets.put(data.head(5), "sales")
    assert len(mdf) == len(data) and len(mdf.value) == len(data)
    assert len(lom.datasets.getl("sales")) == len(data) + 5
    first = lom.datasets.revisions("sales")[0][0]
    assert len(lom.datasets.getl(f"sales@{first[:8]}")) == len(data) // 3 + 1


def test_to_dask_reads_the_parts(lom, data):
    ddf = lom.datasets.getl("sales")[["amount", "qty"]].to_dask()
    assert ddf.npartitions == 3
    pd.testing.assert_frame_equal(ddf.compute(), data[["amount", "qty"]])
    with pytest.raises(InvalidQuery, match="persist this result first"):
        lom.datasets.getl("sales").query(qty=1).to_dask()


def test_what_cannot_be_read_lazily(lom):
    lom.datasets.put({"a": 1}, "conf")
    with pytest.raises(InvalidQuery, match="getl reads DataFrames"):
        lom.datasets.getl("conf")
    with pytest.raises(NotFound):
        lom.datasets.getl("missing")
    series = pd.Series([1.5, 2.5], name="v")
    lom.datasets.put(series, "s")
    pd.testing.assert_series_equal(lom.datasets.getl("s").value, series)
    assert lom.datasets.getl("s").query(v__gt=2).value.tolist() == [2.5]


def test_missing_keys_merge_with_each_other_as_in_pandas(lom):
    left = pd.DataFrame({"k": [1.0, np.nan, 2.0], "a": ["x", "y", "z"]})
    right = pd.DataFrame({"k": [np.nan, 2.0], "b": ["n", "two"]})
    lom.datasets.put(left, "left")
    got = lom.datasets.getl("left").merge(right, on="k").sort("a").value
    expected = left.merge(right, on="k").sort_values("a").reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)
    assert got["b"].tolist() == ["n", "two"]

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from omops.errors import InvalidQuery
from omops.omega import Omega
from omops.query import OPERATORS, Predicate, compile_filters, quote_identifier

FRAME = pd.DataFrame(
    {
        "i": [5, 1, 4, 2, 3, 2],
        "f": [1.5, np.nan, 3.5, -4.5, 0.0, 2.5],
        "s": ["apple", "banana", None, "cherry", "apricot", "Apple pie"],
        "b": [True, False, True, False, True, False],
        "t": pd.to_datetime(
            [
                "2024-01-01 00:00",
                "2024-02-01 12:00",
                None,
                "2024-04-01 00:00",
                "2024-05-01 00:00",
                "2024-06-01 00:00",
            ]
        ),
        "tz": pd.date_range("2024-01-01 06:00", periods=6, freq="D", tz="Europe/Zurich"),
        "c": pd.Categorical(["x", "y", "x", "z", None, "y"], categories=["z", "y", "x"]),
        "n": pd.array([1, None, 3, None, 5, 6], dtype="Int64"),
    },
    index=pd.Index([10, 11, 12, 13, 14, 15], name="key"),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite-backed store for the read-only filter cases (the filters run in DuckDB)."""
    root = tmp_path_factory.mktemp("filters")
    om = Omega(catalog=f"sqlite:///{root / 'catalog.sqlite'}", blobs=str(root / "blobs"))
    om.datasets.put(FRAME, "frame")
    yield om
    om.catalog.close()


def expected(mask):
    if mask.dtype == "boolean":  # nullable comparisons give <NA> for missing values
        mask = mask.fillna(False)
    return FRAME[mask.astype(bool)]


def check(store, filters, mask):
    got = store.datasets.get("frame", **filters)
    want = expected(mask)
    pd.testing.assert_frame_equal(got, want)


TZ = "Europe/Zurich"
CASES = [
    # eq
    ({"i": 2}, FRAME.i == 2),
    ({"i__eq": 2}, FRAME.i == 2),
    ({"f__eq": 3.5}, FRAME.f == 3.5),
    ({"s__eq": "apple"}, FRAME.s == "apple"),
    ({"b": True}, FRAME.b),
    ({"c": "x"}, FRAME.c == "x"),
    ({"n": 3}, FRAME.n == 3),
    ({"t": pd.Timestamp("2024-04-01")}, FRAME.t == pd.Timestamp("2024-04-01")),
    # ne: a missing value is not equal to anything
    ({"i__ne": 2}, FRAME.i != 2),
    ({"f__ne": 3.5}, FRAME.f != 3.5),
    ({"s__ne": "apple"}, FRAME.s != "apple"),
    ({"c__ne": "x"}, FRAME.c != "x"),
    ({"n__ne": 3}, (FRAME.n != 3).fillna(True)),
    # ordering
    ({"i__lt": 3}, FRAME.i < 3),
    ({"i__lte": 3}, FRAME.i <= 3),
    ({"i__gt": 3}, FRAME.i > 3),
    ({"i__gte": 3}, FRAME.i >= 3),
    ({"f__lt": 1.5}, FRAME.f < 1.5),
    ({"f__gte": 1.5}, FRAME.f >= 1.5),
    ({"s__gt": "b"}, FRAME.s > "b"),
    ({"n__lte": 3}, FRAME.n <= 3),
    ({"t__gte": pd.Timestamp("2024-02-01")}, FRAME.t >= pd.Timestamp("2024-02-01")),
    ({"t__lt": dt.datetime(2024, 4, 1)}, FRAME.t < pd.Timestamp("2024-04-01")),
    ({"t__gt": "2024-04-01"}, FRAME.t > pd.Timestamp("2024-04-01")),
    (
        {"tz__gte": pd.Timestamp("2024-01-03 06:00", tz=TZ)},
        FRAME.tz >= pd.Timestamp("2024-01-03 06:00", tz=TZ),
    ),
    (
        {"tz__lt": pd.Timestamp("2024-01-03 05:00", tz="UTC")},  # 06:00 in Zurich
        FRAME.tz < pd.Timestamp("2024-01-03 05:00", tz="UTC"),
    ),
    ({"key__gte": 13}, pd.Series(FRAME.index >= 13, index=FRAME.index)),
    # membership
    ({"i__in": [1, 5]}, FRAME.i.isin([1, 5])),
    ({"i__in": (1, 5)}, FRAME.i.isin([1, 5])),
    ({"i__in": {1, 5}}, FRAME.i.isin([1, 5])),
    ({"s__in": ["apple", "cherry", "nope"]}, FRAME.s.isin(["apple", "cherry", "nope"])),
    ({"c__in": ["x", "z"]}, FRAME.c.isin(["x", "z"])),
    ({"i__nin": [1, 5]}, ~FRAME.i.isin([1, 5])),
    ({"s__nin": ["apple", "cherry"]}, ~FRAME.s.isin(["apple", "cherry"])),
    ({"f__nin": [1.5, 3.5]}, ~FRAME.f.isin([1.5, 3.5])),
    ({"c__nin": ["x"]}, ~FRAME.c.isin(["x"])),
    ({"i__in": []}, FRAME.i.isin([])),
    ({"i__nin": []}, ~FRAME.i.isin([])),
    # between, inclusive at both ends
    ({"i__between": (2, 4)}, FRAME.i.between(2, 4)),
    ({"i__between": [2, 4]}, FRAME.i.between(2, 4)),
    ({"f__between": (0.0, 2.5)}, FRAME.f.between(0.0, 2.5)),
    ({"s__between": ("apple", "b")}, FRAME.s.between("apple", "b")),
    (
        {"t__between": (pd.Timestamp("2024-02-01 12:00"), pd.Timestamp("2024-05-01"))},
        FRAME.t.between(pd.Timestamp("2024-02-01 12:00"), pd.Timestamp("2024-05-01")),
    ),
    # text, case-sensitive
    ({"s__contains": "an"}, FRAME.s.str.contains("an", regex=False, na=False)),
    ({"s__contains": "pp"}, FRAME.s.str.contains("pp", regex=False, na=False)),
    ({"s__contains": "%"}, FRAME.s.str.contains("%", regex=False, na=False)),
    ({"s__startswith": "ap"}, FRAME.s.str.startswith("ap", na=False)),
    ({"s__startswith": "A"}, FRAME.s.str.startswith("A", na=False)),
    ({"s__endswith": "y"}, FRAME.s.str.endswith("y", na=False)),
    ({"c__startswith": "x"}, FRAME.c.astype(object).eq("x")),
    # nulls
    ({"f__isnull": True}, FRAME.f.isna()),
    ({"s__isnull": True}, FRAME.s.isna()),
    ({"t__isnull": True}, FRAME.t.isna()),
    ({"c__isnull": True}, FRAME.c.isna()),
    ({"n__isnull": True}, FRAME.n.isna()),
    ({"n__isnull": False}, FRAME.n.notna()),
    ({"f__notnull": True}, FRAME.f.notna()),
    ({"s__notnull": True}, FRAME.s.notna()),
    ({"n__notnull": True}, FRAME.n.notna()),
    ({"n__notnull": False}, FRAME.n.isna()),
]


def case_id(case):
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


@pytest.mark.parametrize(("filters", "mask"), CASES, ids=[case_id(c) for c in CASES])
def test_operator_matches_pandas(store, filters, mask):
    check(store, filters, mask)


def test_every_operator_is_covered():
    used = set()
    for filters, _ in CASES:
        for key in filters:
            column, sep, op = key.rpartition("__")
            used.add(op if sep else "eq")
    assert used == set(OPERATORS)
    assert set(OPERATORS) == {
        "eq",
        "ne",
        "lt",
        "lte",
        "gt",
        "gte",
        "in",
        "nin",
        "between",
        "contains",
        "startswith",
        "endswith",
        "isnull",
        "notnull",
    }


@pytest.mark.parametrize(
    ("value", "negated"),
    [("apple", "ne"), (["apple", "cherry"], "nin")],
)
def test_complementary_filters_partition_the_rows(store, value, negated):
    positive = store.datasets.get("frame", **{f"s__{'eq' if negated == 'ne' else 'in'}": value})
    negative = store.datasets.get("frame", **{f"s__{negated}": value})
    assert sorted([*positive.index, *negative.index]) == sorted(FRAME.index)


def test_filters_are_anded(store):
    got = store.datasets.get("frame", i__gte=2, s__startswith="ap", f__notnull=True)
    want = FRAME[(FRAME.i >= 2) & FRAME.s.str.startswith("ap", na=False) & FRAME.f.notna()]
    assert len(want) == 2
    pd.testing.assert_frame_equal(got, want)


def test_anded_filters_keep_precedence_with_or_clauses(store):
    # nin matches missing values through an OR: it must stay inside its own clause
    got = store.datasets.get("frame", s__nin=["apple"], i__lt=4)
    want = FRAME[~FRAME.s.isin(["apple"]) & (FRAME.i < 4)]
    assert 12 not in got.index  # s is missing there, but i == 4
    pd.testing.assert_frame_equal(got, want)


def test_contradicting_filters_give_an_empty_frame_with_the_schema(store):
    got = store.datasets.get("frame", i__gt=3, i__lt=2)
    assert len(got) == 0
    pd.testing.assert_frame_equal(got, FRAME.iloc[:0])


def test_filter_with_column_selection(store):
    got = store.datasets.get("frame[i,s]", f__gt=0)
    pd.testing.assert_frame_equal(got, FRAME.loc[FRAME.f > 0, ["i", "s"]])
    got = store.datasets.get("frame[^s]", s="apple")
    pd.testing.assert_frame_equal(got, FRAME.loc[FRAME.s == "apple"].drop(columns="s"))
    got = store.datasets.get("frame", columns=["n"], i=2)
    pd.testing.assert_frame_equal(got, FRAME.loc[FRAME.i == 2, ["n"]])


@pytest.mark.parametrize(
    ("filters", "mask"),
    [
        ({"i__gt": np.int64(3)}, FRAME.i > 3),
        ({"i__gt": np.int32(3)}, FRAME.i > 3),
        ({"i__eq": np.uint8(2)}, FRAME.i == 2),
        ({"f__lt": np.float64(1.5)}, FRAME.f < 1.5),
        ({"f__lt": np.float32(1.5)}, FRAME.f < 1.5),
        ({"s": np.str_("apple")}, FRAME.s == "apple"),
        ({"b": np.bool_(True)}, FRAME.b),
        ({"i__in": np.array([1, 5])}, FRAME.i.isin([1, 5])),
        ({"i__in": [np.int64(1), np.int64(5)]}, FRAME.i.isin([1, 5])),
        ({"i__in": pd.Series([1, 5])}, FRAME.i.isin([1, 5])),
        ({"i__between": np.array([2, 4])}, FRAME.i.between(2, 4)),
        ({"t__gte": np.datetime64("2024-02-01")}, FRAME.t >= pd.Timestamp("2024-02-01")),
        (
            {"t__gte": np.datetime64("2024-02-01T12:00:00.000000000")},
            FRAME.t >= pd.Timestamp("2024-02-01 12:00"),
        ),
        (
            {"t__gt": np.datetime64("2024-02-01T12:00:00", "s")},
            FRAME.t > pd.Timestamp("2024-02-01 12:00"),
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, dict) else case_id((v,)),
)
def test_numpy_scalar_values(store, filters, mask):
    check(store, filters, mask)


@pytest.mark.parametrize("key", ["s", "s__eq", "i__gt", "s__in", "s__contains"])
def test_none_value_gives_a_clear_error(store, key):
    with pytest.raises(InvalidQuery, match=r"None; use s__isnull=True|None; use i__isnull=True"):
        store.datasets.get("frame", **{key: None})


def test_nan_value_gives_a_clear_error(store):
    with pytest.raises(InvalidQuery, match="NaN; use isnull=True"):
        store.datasets.get("frame", f=float("nan"))
    with pytest.raises(InvalidQuery, match="NaN"):
        store.datasets.get("frame", f__ne=np.nan)


def test_unknown_column_is_named_and_columns_listed(store):
    with pytest.raises(InvalidQuery) as info:
        store.datasets.get("frame", sales__gte=100)
    message = str(info.value)
    assert "unknown column 'sales'" in message
    assert "i, f, s, b, t, tz, c, n" in message
    with pytest.raises(InvalidQuery, match="unknown column 'sales'"):
        store.datasets.get("frame", sales=1)


def test_unknown_operator_is_named_and_operators_listed(store):
    with pytest.raises(InvalidQuery) as info:
        store.datasets.get("frame", i__like="%")
    message = str(info.value)
    assert "unknown operator 'like'" in message
    for op in OPERATORS:
        assert op in message


def test_pandas_index_level_columns_are_not_filterable(tmp_path):
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put(pd.DataFrame({"a": [1, 2]}), "unnamed")
        with pytest.raises(InvalidQuery, match="unknown column '__index_level_0__'"):
            om.datasets.get("unnamed", __index_level_0____eq=0)
    finally:
        om.catalog.close()


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"i__in": 3}, "in needs a list"),
        ({"i__nin": "abc"}, "nin needs a list"),
        ({"i__between": (1,)}, "between needs two values"),
        ({"i__between": (1, 2, 3)}, "between needs two values"),
        ({"i__contains": "1"}, "contains works on text columns"),
        ({"s__startswith": 1}, "needs a string"),
        ({"s__isnull": "yes"}, "True or False"),
        ({"s__notnull": 1}, "True or False"),
    ],
)
def test_bad_values_raise_invalid_query(store, filters, match):
    with pytest.raises(InvalidQuery, match=match):
        store.datasets.get("frame", **filters)


HOSTILE_VALUES = [
    "x'; DROP TABLE objects; --",
    'x"; DROP TABLE objects; --',
    "' OR '1'='1",
    "') OR TRUE --",
    "$p0",
    "%",
]


def test_values_are_bound_parameters(om):
    om.datasets.put(FRAME, "frame")
    for value in HOSTILE_VALUES:
        assert len(om.datasets.get("frame", s=value)) == 0
        assert len(om.datasets.get("frame", s__startswith=value)) == 0
        assert len(om.datasets.get("frame", s__in=[value, "apple"])) == 1
        assert len(om.datasets.get("frame", s__ne=value)) == len(FRAME)
    # the catalog is intact and still readable
    assert om.datasets.list() == ["frame"]
    assert len(om.datasets.revisions("frame")) == 1
    pd.testing.assert_frame_equal(om.datasets.get("frame"), FRAME)


@pytest.mark.parametrize(
    "key",
    ['s" OR 1=1 --', "s = s OR 1=1 --", 's"; DROP TABLE objects; --__eq', "1=1) OR (s"],
)
def test_column_names_in_keys_cannot_inject(store, key):
    with pytest.raises(InvalidQuery, match="unknown column"):
        store.datasets.get("frame", **{key: "x"})


def test_odd_column_names_are_quoted(tmp_path):
    frame = pd.DataFrame({'we"ird col': ["x", "y"], "select": [1, 2], "a b": [3.0, 4.0]})
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put(frame, "odd")
        pd.testing.assert_frame_equal(om.datasets.get("odd", **{'we"ird col': "y"}), frame.iloc[1:])
        pd.testing.assert_frame_equal(om.datasets.get("odd", select__gt=1), frame.iloc[1:])
        pd.testing.assert_frame_equal(om.datasets.get("odd", **{"a b__lt": 4}), frame.iloc[:1])
        om.datasets.put(pd.DataFrame({"a__b": [1, 2]}), "dunder")
        pd.testing.assert_frame_equal(
            om.datasets.get("dunder", a__b__gt=1), pd.DataFrame({"a__b": [2]}, index=[1])
        )
        with pytest.raises(InvalidQuery, match="use a__b__isnull=True"):
            om.datasets.get("dunder", a__b=None)
    finally:
        om.catalog.close()


def test_filters_as_a_dict_for_columns_named_like_parameters(tmp_path):
    frame = pd.DataFrame({"columns": [1, 2, 3], "revision": ["a", "b", "c"], "name": [0, 0, 1]})
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put(frame, "params")
        got = om.datasets.get("params", filters={"columns__gt": 1, "revision": "c", "name": 1})
        pd.testing.assert_frame_equal(got, frame.iloc[2:])
        got = om.datasets.get("params", filters={"columns__gt": 1}, revision__ne="b")
        pd.testing.assert_frame_equal(got, frame.iloc[2:])
    finally:
        om.catalog.close()


def test_columns_differing_only_in_case(tmp_path):
    """DuckDB identifiers are case-insensitive; filters must still hit the right column."""
    frame = pd.DataFrame({"A": [1, 2, 3], "a": [4, 5, 6]})
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put(frame, "case")
        pd.testing.assert_frame_equal(om.datasets.get("case", a__gt=4), frame[frame.a > 4])
        pd.testing.assert_frame_equal(om.datasets.get("case", A__gt=1), frame[frame.A > 1])
    finally:
        om.catalog.close()


def test_filters_read_every_appended_part(om):
    om.datasets.put(FRAME.iloc[:3], "parts")
    om.datasets.put(FRAME.iloc[3:], "parts")
    pd.testing.assert_frame_equal(om.datasets.get("parts", i__gte=3), FRAME[FRAME.i >= 3])
    pd.testing.assert_frame_equal(
        om.datasets.get("parts", i__gte=3).loc[[10, 12, 14]], FRAME.loc[[10, 12, 14]]
    )


def test_filters_on_a_series(tmp_path):
    series = pd.Series([1.0, 5.0, 3.0], name="value")
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put(series, "series")
        pd.testing.assert_series_equal(om.datasets.get("series", value__gt=2), series[series > 2])
    finally:
        om.catalog.close()


def test_filters_on_other_kinds_are_refused(tmp_path):
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=str(tmp_path / "b"))
    try:
        om.datasets.put({"a": 1}, "conf")
        om.datasets.put(np.arange(3), "array")
        with pytest.raises(InvalidQuery, match="apply to DataFrames"):
            om.datasets.get("conf", a=1)
        with pytest.raises(InvalidQuery, match="apply to DataFrames"):
            om.datasets.get("array", x__gt=1)
        with pytest.raises(InvalidQuery, match="apply to DataFrames"):
            om.datasets.get("array[a]")
    finally:
        om.catalog.close()


# -- the compiler on its own --------------------------------------------------


def test_compile_no_filters():
    predicate = compile_filters({}, {"a": "int64"})
    assert predicate == Predicate()
    assert not predicate
    assert predicate.sql == "TRUE"


def test_compile_binds_every_value():
    predicate = compile_filters(
        {"a__in": [1, 2], "b__between": (0, 9), "s__contains": "x'--"},
        {"a": "int64", "b": "double", "s": "string"},
    )
    assert predicate
    assert "x'--" not in predicate.sql
    assert "'" not in predicate.sql
    assert predicate.params == {"p0": 1, "p1": 2, "p2": 0, "p3": 9, "p4": "x'--"}
    assert predicate.sql.count(" AND ") >= 2


def test_compile_turns_numpy_scalars_into_python():
    predicate = compile_filters(
        {"a": np.int64(3), "b": np.float32(0.5)}, {"a": "int64", "b": "float"}
    )
    assert [type(v) for v in predicate.params.values()] == [int, float]


def test_quote_identifier_doubles_quotes():
    assert quote_identifier('a"b') == '"a""b"'
    assert quote_identifier("plain") == '"plain"'


def test_column_named_like_an_operator_key_is_an_equality():
    predicate = compile_filters({"a__gt": 1}, {"a__gt": "int64", "a": "int64"})
    assert predicate.sql == '("a__gt" = $p0)'


def test_filters_on_two_blob_stores_of_one_protocol(tmp_path):
    """Two instances on memory:// (or two s3:// buckets) in one process both filter."""
    frame = pd.DataFrame({"a": [1, 2, 3]})
    stores = [
        Omega(
            catalog=f"sqlite:///{tmp_path / f'c{i}.sqlite'}",
            blobs=f"memory://omops-filters-{uuid.uuid4().hex}",
        )
        for i in range(2)
    ]
    try:
        for om in stores:
            om.datasets.put(frame, "d")
            pd.testing.assert_frame_equal(om.datasets.get("d", a__gt=1), frame[frame.a > 1])
    finally:
        for om in stores:
            if om.blobs.fs.exists(om.blobs.root):
                om.blobs.fs.rm(om.blobs.root, recursive=True)
            om.catalog.close()


SQL_TEXT = ("SELECT", "read_parquet", "WHERE", "LINE 1", "$p", "Conversion Error", '"c0"')


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"i__gte": "abc"}, "filter 'i__gte': 'abc' is not a number, but column 'i' is int64"),
        ({"i": [1]}, "is not a number"),
        ({"f__lt": "1.5x"}, "'1.5x' is not a number, but column 'f' is double"),
        ({"n__in": [1, "two"]}, "'two' is not a number"),
        ({"i__between": (1, "z")}, "'z' is not a number"),
        ({"s": 5}, "5 is not text, but column 's' holds text"),
        ({"s__in": ["a", 1]}, "1 is not text"),
        ({"c": 1.5}, "is not text"),
        ({"b": "maybe"}, "'maybe' is not true or false, but column 'b' is bool"),
        ({"b": 2}, "is not true or false"),
        ({"t__gt": "not a date"}, "'not a date' is not a date or time, but column 't'"),
        ({"tz__lt": 5.5}, "is not a date or time"),
        ({"i__gte": "nan"}, "NaN"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_plain_invalid_query(store, filters, message):
    """Checked against the column's type before any SQL runs: no DuckDB text in the message."""
    with pytest.raises(InvalidQuery) as caught:
        store.datasets.get("frame", **filters)
    assert message in str(caught.value)
    assert not any(sql in str(caught.value) for sql in SQL_TEXT), str(caught.value)


@pytest.mark.parametrize(
    ("filters", "mask"),
    [
        ({"i__gte": "3"}, FRAME.i >= 3),
        ({"i__in": ["1", 5]}, FRAME.i.isin([1, 5])),
        ({"f__lt": " 1.5 "}, FRAME.f < 1.5),
        ({"b": "true"}, FRAME.b),
        ({"b": 0}, ~FRAME.b),
        ({"i__gt": True}, FRAME.i > 1),
        ({"t__gte": "2024-04-01"}, FRAME.t >= pd.Timestamp("2024-04-01")),
    ],
    ids=str,
)
def test_values_as_text_or_of_a_near_type_are_taken(store, filters, mask):
    """Numbers as text (a query string, the CLI) are numbers; booleans as 1/0 or text."""
    check(store, filters, mask)


def test_a_streamed_filtered_read_gives_what_get_gives(store):
    for filters, _ in CASES:
        stream = store.datasets.stream("frame", filters=filters)
        table = pa.Table.from_batches(list(stream.batches), schema=stream.schema)
        assert stream.count() == table.num_rows
        got, want = table.to_pandas(), store.datasets.get("frame", **filters)
        # get() restores a categorical's full categories from the metadata; Arrow has those seen
        pd.testing.assert_frame_equal(got, want, check_categorical=False)

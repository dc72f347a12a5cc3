"""What is accepted can be read back: poison data is refused before anything is stored.

Seen: a cell nested 50 to 900 lists deep was stored (200) and every later GET
answered 500 (``Parquet schema too deeply nested``; a raw ``OSError`` in
Python); 1,000 levels gave 500 ``RecursionError`` on dataset PUT, ``fit`` and
``predict?async=true``; a ``{}`` cell gave 500 ``ArrowNotImplementedError``;
column names with NUL were stored and read back as duplicate JSON keys.

The fuzz tests put random nested JSON values and random frames through Python
and REST: every accepted write reads back equal, every refused one is
``InvalidData`` (REST: 400 JSON) and stores nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server.support import Server, assert_error, copy_home

from omops.errors import InvalidData
from omops.omega import Omega
from omops.plugins._tables import MAX_DEPTH
from omops.plugins.simple import MAX_JSON_DEPTH

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_names = (f"poison/{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def server(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = copy_home(template_home, tmp_path_factory.mktemp("poison") / "home")
    with Server(home) as served:
        yield served


@pytest.fixture(scope="module")
def om(server: Server) -> Iterator[Omega]:
    found = Omega(home=str(server.home))
    yield found
    found.close()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def stored_state(om: Omega) -> tuple[list[str], int]:
    """Names and blob files: what a refused put must leave unchanged."""
    objects = Path(om.blobs.root) / "objects"
    files = sum(1 for p in objects.rglob("*") if p.is_file()) if objects.exists() else 0
    return om.datasets.list(hidden=True), files


# -- the reported cases ----------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50, 100, 900, 1000])
def test_deep_cells_are_refused_over_rest(http: httpx.Client, om: Omega, depth: int) -> None:
    before = stored_state(om)
    cell = b"[" * depth + b"1" + b"]" * depth  # deeper than JSON encoders go
    body = b'{"columns": ["x"], "data": [[' + cell + b"]]}"
    headers = {"Content-Type": "application/json"}
    response = http.put("/api/v1/dataset/deep", content=body, headers=headers)
    assert_error(response, 400, "invalid_data", "nested more than 32 levels")
    for action in ("fit", "predict?async=true"):
        answer = http.post(f"/api/v1/model/forecast/{action}", content=body, headers=headers)
        assert_error(answer, 400, "invalid_data")
    assert stored_state(om) == before
    assert http.get("/api/v1/dataset/stats").status_code == 200


def test_the_deepest_accepted_cell_reads_back(http: httpx.Client, om: Omega) -> None:
    cell = nested(MAX_DEPTH, 1.5)
    response = http.put("/api/v1/dataset/deepest", json={"data": {"a": [cell]}})
    assert response.status_code == 200, response.text
    assert http.get("/api/v1/dataset/deepest").json() == [{"a": cell}]
    assert plain(om.datasets.get("deepest").loc[0, "a"]) == cell


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 50, 900, 5000])
def test_deep_cells_are_refused_in_python(om: Omega, depth: int) -> None:
    before = stored_state(om)
    for frame in (
        pd.DataFrame({"a": [nested(depth)]}),
        pd.DataFrame({"a": [{"k": nested(depth - 1)}]}),
    ):
        with pytest.raises(InvalidData, match="nested more than 32 levels"):
            om.datasets.put(frame, "deep")
    assert stored_state(om) == before


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (pd.DataFrame({"a": [{}, {}]}), "empty dicts"),
        (pd.DataFrame({"a": [{"k": {}}]}), "empty dicts"),
        (pd.DataFrame({"a": [[{}]]}), "empty dicts"),
        (pd.DataFrame({"a\0b": [1], "a": [2]}), "NUL"),
        (pd.DataFrame({"x": [1]}, index=pd.Index([1], name="i\0")), "NUL"),
        (pd.DataFrame([[1, 2]], columns=[1, "1"]), r"duplicate column names \['1'\]"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), r"duplicate column names \['a'\]"),
        (pd.DataFrame([[1, 2]], columns=[True, False]), "would read back as"),
        (pd.DataFrame([[1, 2]], columns=["a", 1]), "read back as text"),
        (pd.DataFrame([[1]], columns=[("a", 1)]), "read back as"),
        (pd.DataFrame({"__index_level_0__": [1]}), "reserved"),
        (pd.DataFrame({"x": [1]}, index=pd.Index([1], name="x")), "also column names"),
        (pd.DataFrame({"a": [{"k\0": 1}]}), "dict key .* with a NUL"),
        (pd.DataFrame({"a": [[0.0, False]]}), "mixes booleans and numbers at \\[i\\]"),
        (pd.DataFrame({"a": [1.5, True]}, dtype=object), "mixes booleans and numbers"),
        (pd.DataFrame({"a": [{"k": 1}, {"k": True}]}), "booleans and numbers at \\['k'\\]"),
    ],
)
def test_what_parquet_cannot_hold_is_refused(om: Omega, frame: pd.DataFrame, fragment) -> None:
    before = stored_state(om)
    with pytest.raises(InvalidData, match=fragment):
        om.datasets.put(frame, "poison")
    assert stored_state(om) == before


@pytest.mark.parametrize(
    "body",
    [
        {"columns": ["a"], "data": [[{}]]},
        {"data": {"a": [{"k": {}}]}},
        [{"a\u0000b": 1, "a": 2}],
        {"columns": ["a\u0000"], "data": [[1]]},
        {"columns": ["__index_level_0__"], "data": [[1]]},
    ],
)
def test_what_parquet_cannot_hold_is_a_400(http: httpx.Client, om: Omega, body: Any) -> None:
    before = stored_state(om)
    assert_error(http.put("/api/v1/dataset/poison", json=body), 400, "invalid_data")
    assert stored_state(om) == before


def test_names_that_round_trip_are_kept(om: Omega) -> None:
    for columns in ([0, 1, 2], [1.5, 2.5, 3.5], pd.date_range("2024-01-01", periods=3)):
        frame = pd.DataFrame([[1, 2, 3]], columns=columns)
        om.datasets.put(frame, "named", append=False)
        got = om.datasets.get("named").columns
        assert list(got) == list(frame.columns) and got.dtype == frame.columns.dtype


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (nested(MAX_JSON_DEPTH + 1), "more than 64 levels"),
        ({"a": float("nan")}, "NaN or infinity"),
        ([1.0, float("inf")], "NaN or infinity"),
        ({"a": np.array([1.0, -np.inf])}, "NaN or infinity"),
        ({1: "a"}, "cannot store as JSON"),
        ({"a": object()}, "cannot store as JSON"),
        ([2**64], "cannot store as JSON"),
        (["\ud800"], "cannot store as JSON"),
    ],
)
def test_json_that_cannot_be_read_back_is_refused(om: Omega, value: Any, fragment: str) -> None:
    before = stored_state(om)
    with pytest.raises(InvalidData, match=fragment):
        om.datasets.put(value, "config", kind="python.json")
    assert stored_state(om) == before


# -- fuzz ----------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=40,
)
NAMES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["a", "a\x00", "__index_level_0__", "", "1"]),
    st.integers(-2, 2),
)


def deep_values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values around the depth limit: lists and dicts nested 25 to 40 levels."""

    def wrap(depth: int, inner: Any, kinds: list[bool]) -> Any:
        for as_dict in kinds[:depth]:
            inner = {"k": inner} if as_dict else [inner]
        return inner

    return st.builds(
        wrap,
        st.integers(25, 40),
        leaf,
        st.lists(st.booleans(), min_size=40, max_size=40),
    )


CELLS = {
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "text": st.text(max_size=8),
    "bool": st.booleans(),
    "list": st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    "struct": st.fixed_dictionaries(
        {"a": st.integers(-5, 5), "b": st.lists(st.text(max_size=3), max_size=2)}
    ),
    "deep": deep_values(st.integers(0, 9)),
}


def typed_column(rows: int) -> st.SearchStrategy[list[Any]]:
    """Cells of one shape (what a column holds when it is well-formed), some missing."""
    return st.sampled_from(sorted(CELLS)).flatmap(
        lambda shape: st.lists(st.one_of(st.none(), CELLS[shape]), min_size=rows, max_size=rows)
    )


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Any], list[list[Any]]]:
    """Column names and columns: well-formed ones, and any JSON at all."""
    rows = draw(st.integers(1, 4))
    names = draw(st.lists(NAMES, min_size=1, max_size=4))
    columns = [
        draw(st.one_of(typed_column(rows), st.lists(JSON_VALUES, min_size=rows, max_size=rows)))
        for _ in names
    ]
    return names, columns


def plain(value: Any) -> Any:
    """A read-back cell as plain JSON-like Python: arrays as lists, NaN as None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def same(sent: Any, got: Any) -> bool:
    """Equal as JSON data, by the documented rules: booleans only equal booleans; numbers
    by value, as float64 where a place holds floats (JSON has one number type: a column
    or list of numbers with any fraction is float64, as a JavaScript reader would have
    it); a key a struct cell lacked reads back as null (a column's cells share keys)."""
    if isinstance(sent, bool) or isinstance(got, bool):
        return type(sent) is type(got) and sent == got
    if isinstance(sent, (int, float)) and isinstance(got, (int, float)):
        if isinstance(sent, float) or isinstance(got, float):
            return float(sent) == float(got)
        return sent == got
    if isinstance(sent, dict) and isinstance(got, dict):
        return set(sent) <= set(got) and all(same(sent.get(k), got[k]) for k in got)
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(same(a, b) for a, b in zip(sent, got, strict=True))
    return sent == got


def check_refused_or_same(
    put: Any, read: Any, om: Omega, sent: list[dict[str, Any]] | None, refusal: type[Exception]
) -> bool:
    """Put; a refusal must store nothing, an acceptance must read back the same rows.

    ``sent`` None: the put must be refused (duplicate column names).
    """
    before = stored_state(om)
    try:
        put()
    except refusal:
        assert stored_state(om) == before
        return False
    assert sent is not None, "a frame with duplicate column names was accepted"
    got = read()
    assert len(got) == len(sent)
    for want, row in zip(sent, got, strict=True):
        assert set(want) == set(row), (want, row)
        for key, value in want.items():
            assert same(plain(value), plain(row[key])), (key, value, row[key])
    return True


@FUZZ
@given(table=tables())
def test_random_frames_through_python(om: Omega, table: tuple[list[Any], list[Any]]) -> None:
    names, columns = table
    name = next(_names)
    try:
        frame = pd.DataFrame(dict(enumerate(columns)))
    except (ValueError, TypeError):
        return  # pandas itself refuses: nothing of ours to test
    frame.columns = pd.Index(names, dtype=object)
    sent = frame.to_dict(orient="records") if frame.columns.is_unique else None
    check_refused_or_same(
        lambda: om.datasets.put(frame, name, append=False),
        lambda: om.datasets.get(name).to_dict(orient="records"),
        om,
        sent,
        InvalidData,
    )


class Refused(Exception):
    """A REST put answered 400 with a JSON error."""


@FUZZ
@given(table=tables())
def test_random_frames_through_rest(
    http: httpx.Client, om: Omega, table: tuple[list[Any], list[Any]]
) -> None:
    names, columns = table
    names = [str(n) for n in names]  # JSON names are text
    path = f"/api/v1/dataset/{next(_names)}"
    rows = [list(row) for row in zip(*columns, strict=True)]
    body = {"columns": names, "data": rows}

    def put() -> None:
        response = http.put(
            path,
            content=orjson.dumps(body),
            params={"append": "false"},
            headers={"Content-Type": "application/json"},
        )
        if response.status_code == 400:
            assert response.json()["error"] in ("invalid_data", "invalid_name"), response.text
            raise Refused
        assert response.status_code == 200, response.text

    unique = len(set(names)) == len(names)
    sent = [dict(zip(names, row, strict=True)) for row in rows] if unique else None
    check_refused_or_same(put, lambda: http.get(path).json(), om, sent, Refused)


@FUZZ
@given(value=st.one_of(JSON_VALUES, deep_values(SCALARS), st.floats()))
def test_random_json_through_python(om: Omega, value: Any) -> None:
    name = next(_names)
    before = stored_state(om)
    try:
        om.datasets.put(value, name, kind="python.json")
    except InvalidData:
        assert stored_state(om) == before
        return
    got = om.datasets.get(name)
    assert same(value, got) and same(got, value)

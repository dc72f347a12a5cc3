"""Floats round-trip exactly through every REST read and write.

Seen: ``GET /api/v1/dataset/prec`` answered ``0.123456789`` for
``0.1234567890123456`` and ``1.797693135e+308`` for ``1.7976931348623157e308``,
which a JSON parser reads as infinity (pandas' ``to_json`` writes 10 digits).
Now JSON answers are written by orjson from the Arrow data (the shortest text
that reads back as the same float64). The one rule for what JSON cannot hold:
NaN and infinities are ``null`` in JSON answers; Arrow and Parquet answers
keep infinities (NaN, pandas' missing value, is stored as a missing value:
null in every answer, NaN again in Python).
"""

from __future__ import annotations

import io
import itertools
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server.support import Server, copy_home

from omops.omega import Omega

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
FLOATS = st.floats(width=64)  # every float64, NaN and infinities included
FINITE = st.floats(allow_nan=False, allow_infinity=False)
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_names = (f"floats/{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def server(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = copy_home(template_home, tmp_path_factory.mktemp("floats") / "home")
    with Server(home) as served:
        yield served


@pytest.fixture(scope="module")
def om(server: Server) -> Iterator[Omega]:
    """An Omega on the server's own store: Python writes, the server reads, and back."""
    found = Omega(home=str(server.home))
    yield found
    found.close()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def bits(value: float) -> bytes:
    """The float64's bytes: tells -0.0 from 0.0, unlike ==."""
    return struct.pack(">d", value)


def json_column(http: httpx.Client, name: str) -> list:
    response = http.get(f"/api/v1/dataset/{name}")
    assert response.status_code == 200, response.text
    return [row["x"] for row in response.json()]


def test_the_reported_values(http: httpx.Client, om: Omega) -> None:
    values = [0.1234567890123456, 1.7976931348623157e308, 5e-324, -0.0, 0.1 + 0.2]
    om.datasets.put(pd.DataFrame({"x": values}), "prec")
    text = http.get("/api/v1/dataset/prec").content
    assert b"0.1234567890123456" in text and b"1.7976931348623157e+308" in text
    assert [bits(v) for v in json_column(http, "prec")] == [bits(v) for v in values]


@EXAMPLES
@given(values=st.lists(FLOATS, min_size=1, max_size=30))
def test_python_put_rest_get(http: httpx.Client, om: Omega, values: list[float]) -> None:
    name = next(_names)
    om.datasets.put(pd.DataFrame({"x": values}), name)
    for value, got in zip(values, json_column(http, name), strict=True):
        if math.isfinite(value):
            assert bits(got) == bits(value)
        else:
            assert got is None  # the one rule: no NaN or infinity in JSON
    for accept, read in ((ARROW, arrow_table), (PARQUET, parquet_table)):
        response = http.get(f"/api/v1/dataset/{name}", headers={"Accept": accept})
        column = read(response.content).column("x").to_pylist()
        # NaN is pandas' missing value: stored as null. Infinities are kept.
        assert [None if v is None else bits(v) for v in column] == [
            None if math.isnan(v) else bits(v) for v in values
        ]


def arrow_table(content: bytes) -> pa.Table:
    return pa.ipc.open_stream(content).read_all()


def parquet_table(content: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(content))


@EXAMPLES
@given(values=st.lists(st.one_of(FINITE, st.none()), min_size=1, max_size=30))
def test_rest_put_python_get_and_rest_get(
    http: httpx.Client, om: Omega, values: list[float | None]
) -> None:
    name = next(_names)
    body = orjson.dumps({"columns": ["x"], "data": [[v] for v in values]})
    response = http.put(
        f"/api/v1/dataset/{name}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    stored = om.datasets.get(name)["x"].tolist()
    for value, got in zip(values, stored, strict=True):
        if value is None:  # NaN in a float column; None when no value came at all
            assert got is None or np.isnan(got)
        else:
            assert bits(float(got)) == bits(value)
    for value, got in zip(values, json_column(http, name), strict=True):
        assert got is None if value is None else bits(float(got)) == bits(value)


@EXAMPLES
@given(values=st.lists(FLOATS, min_size=1, max_size=30))
def test_an_arrow_put_keeps_every_float(http: httpx.Client, om: Omega, values: list[float]) -> None:
    name = next(_names)
    table = pa.table({"x": pa.array(values, pa.float64())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = http.put(
        f"/api/v1/dataset/{name}",
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": ARROW},
    )
    assert response.status_code == 200, response.text
    stored = om.datasets.get(name)["x"].tolist()
    assert [bits(v) if not math.isnan(v) else "nan" for v in stored] == [
        bits(v) if not math.isnan(v) else "nan" for v in values
    ]

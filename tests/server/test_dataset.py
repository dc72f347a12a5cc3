"""``/api/v1/dataset`` in-process: list, read with filters, write from JSON, delete."""

from __future__ import annotations

import datetime as dt
import io
import os

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import assert_error, local_client, stats_frame

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

STATS = "/api/v1/dataset/stats"


def test_list_datasets(client: TestClient, store: Omega) -> None:
    store.datasets.put({"a": 1}, "team/config")
    names = [d["name"] for d in client.get("/api/v1/dataset").json()["datasets"]]
    assert sorted(names) == ["stats", "team/config"]


def test_list_datasets_hides_internal_names_unless_asked(client: TestClient, store: Omega) -> None:
    store.datasets.put({"a": 1}, "_experiments/exp/1/train")
    store.datasets.put({"a": 2}, "_temp/3f2a")
    names = [d["name"] for d in client.get("/api/v1/dataset").json()["datasets"]]
    assert names == ["stats"]
    listed = client.get("/api/v1/dataset", params={"hidden": "true"}).json()["datasets"]
    assert [d["name"] for d in listed] == ["_experiments/exp/1/train", "_temp/3f2a", "stats"]
    assert client.get("/api/v1/dataset/_temp/3f2a").json()["data"] == {"a": 2}
    assert client.get("/api/v1/dataset", params={"hidden": "maybe"}).status_code == 422


def test_read_all_rows_as_records(client: TestClient) -> None:
    response = client.get(STATS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == stats_frame().to_dict(orient="records")


@pytest.mark.parametrize(
    ("params", "xs"),
    [
        ({"sales__gte": "100"}, list(range(10, 20))),
        ({"sales": "30"}, [3]),
        ({"x__lt": "2.5"}, [0, 1, 2]),
        ({"x__between": "3,5"}, [3, 4, 5]),
        ({"x__in": "1,7"}, [1, 7]),
        ({"sales__nin": "0,10,20"}, list(range(3, 20))),
        ({"region": "US", "x__gt": "14"}, [15, 17, 19]),
        ({"region__ne": "EU", "x__lte": "4"}, [1, 3]),
        ({"region__startswith": "U", "sales__lt": "40"}, [1, 3]),
        ({"region__isnull": "true"}, []),
        ({"region__notnull": "1", "x__lt": "1"}, [0]),
        ({"y": "1", "x__lt": "11"}, [10]),
    ],
)
def test_filters_as_in_python(client: TestClient, params: dict[str, str], xs: list[int]) -> None:
    response = client.get(STATS, params=params)
    assert response.status_code == 200, response.text
    assert [row["x"] for row in response.json()] == xs


def test_columns_orient_limit_offset(client: TestClient) -> None:
    params = {"sales__gte": "100", "columns": "sales,x", "limit": "2", "offset": "1"}
    assert client.get(STATS, params=params).json() == [
        {"sales": 110, "x": 11.0},
        {"sales": 120, "x": 12.0},
    ]
    split = client.get(STATS, params={**params, "orient": "split"}).json()
    assert split["columns"] == ["sales", "x"]
    assert split["data"] == [[110, 11.0], [120, 12.0]]
    assert client.get(STATS, params={"limit": "0"}).json() == []
    assert len(client.get(STATS, params={"offset": "18"}).json()) == 2
    assert client.get(STATS, params={"offset": "50"}).json() == []
    assert client.get(STATS, params={"columns": ","}).json()[0].keys() == {
        "x",
        "sales",
        "y",
        "region",
    }


def test_column_selector_in_the_name(client: TestClient) -> None:
    rows = client.get("/api/v1/dataset/stats[^sales,y,region]", params={"x__lt": "2"}).json()
    assert rows == [{"x": 0.0}, {"x": 1.0}]


def test_dates_and_booleans_are_typed_from_the_schema(client: TestClient, store: Omega) -> None:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01", "2024-06-01", "2025-01-01"]),
            "ok": [True, False, True],
        }
    )
    store.datasets.put(frame, "events")
    rows = client.get(
        "/api/v1/dataset/events", params={"when__gte": "2024-03-01", "ok": "true"}
    ).json()
    assert rows == [{"when": "2025-01-01T00:00:00.000000", "ok": True}]


def test_an_older_revision(client: TestClient, store: Omega) -> None:
    first = store.datasets.metadata("stats").revision
    store.datasets.put(stats_frame(), "stats")  # appends: 40 rows now
    assert len(client.get(STATS).json()) == 40
    assert len(client.get(f"{STATS}@{first[:8]}").json()) == 20


def test_series_and_objects_that_are_not_frames(client: TestClient, store: Omega) -> None:
    store.datasets.put(pd.Series([1.5, 2.5], name="s"), "series")
    store.datasets.put({"threshold": 0.5}, "config")
    store.datasets.put(np.arange(3.0), "array")
    assert client.get("/api/v1/dataset/series", params={"limit": "1"}).json() == [{"s": 1.5}]
    assert client.get("/api/v1/dataset/config").json() == {
        "name": "config",
        "kind": "python.json",
        "data": {"threshold": 0.5},
    }
    assert client.get("/api/v1/dataset/array").json()["data"] == [0.0, 1.0, 2.0]
    assert_error(
        client.get("/api/v1/dataset/config", params={"threshold": "1"}), 400, "apply to DataFrames"
    )


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"sales__gte": "abc"}, 400, "'abc' is not a number"),
        ({"nocol__gte": "1"}, 400, "unknown column 'nocol'"),
        ({"nocol": "1"}, 400, "unknown column"),
        ({"sales__bogus": "1"}, 400, "unknown operator 'bogus'"),
        ({"x__between": "1"}, 400, "between needs two values"),
        ({"x__in": ""}, 400, "is not a number"),
        ({"x": "nan"}, 400, "NaN"),
        ({"region__isnull": "maybe"}, 400, "takes true or false"),
        ({"x__contains": "1"}, 400, "text columns"),
        ({"columns": "nope"}, 400, "unknown column(s) ['nope']"),
        ({"orient": "table"}, 422, "orient"),
        ({"limit": "-1"}, 422, "limit"),
        ({"offset": "x"}, 422, "offset"),
    ],
)
def test_bad_filters(
    client: TestClient, params: dict[str, str], status: int, fragment: str
) -> None:
    assert_error(client.get(STATS, params=params), status, fragment)


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/api/v1/dataset/nope", 404, "dataset 'nope' does not exist"),
        ("/api/v1/dataset/stats@nope", 404, "no tag or revision"),
        ("/api/v1/dataset/..%2Fetc", 400, "invalid name"),
        ("/api/v1/dataset/a%3Bb", 400, "invalid name"),
    ],
)
def test_unknown_or_invalid_names(
    client: TestClient, path: str, status: int, fragment: str
) -> None:
    assert_error(client.get(path), status, fragment)


@pytest.mark.parametrize(
    "body",
    [
        {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]},
        {"data": {"a": [1, 2], "b": ["x", "y"]}},
        [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
    ],
)
def test_put_creates_appends_and_replaces(client: TestClient, body: object) -> None:
    path = "/api/v1/dataset/new/table"
    created = client.put(path, json=body)
    assert created.status_code == 200, created.text
    assert created.json()["rows"] == 2 and created.json()["columns"] == ["a", "b"]
    appended = client.put(path, json=body).json()
    assert appended["rows"] == 4 and appended["revision"] != created.json()["revision"]
    assert [r["a"] for r in client.get(path).json()] == [1, 2, 1, 2]
    replaced = client.put(path, params={"append": "false"}, json={"data": {"a": [9], "b": ["z"]}})
    assert replaced.json()["rows"] == 1
    assert client.get(path).json() == [{"a": 9, "b": "z"}]
    assert len(client.get(f"{path}@{created.json()['revision'][:8]}").json()) == 2


@pytest.mark.parametrize(
    ("path", "params", "content", "status", "fragment"),
    [
        ("/api/v1/dataset/stats", {}, b'{"data": {"zzz": [1]}}', 400, "cannot append"),
        ("/api/v1/dataset/stats", {}, b'{"data": {"x": ["text"]}}', 400, "cannot append"),
        ("/api/v1/dataset/t", {}, b'{"data": {"a": [1, "x"]}}', 400, "one type"),
        ("/api/v1/dataset/t", {}, b"", 400, "has no body"),
        ("/api/v1/dataset/t", {}, b"nope", 400, "not valid JSON"),
        ("/api/v1/dataset/t", {}, b'{"data": {}}', 400, "names no columns"),
        ("/api/v1/dataset/t", {}, b"[]", 400, "names no columns"),
        ("/api/v1/dataset/t", {}, b'{"columns": ["a"], "data": [[1, 2]]}', 400, "row 0"),
        ("/api/v1/dataset/t", {"append": "perhaps"}, b"[]", 422, "append"),
        ("/api/v1/dataset/..%2Ft", {}, b'[{"a": 1}]', 400, "invalid name"),
        ("/api/v1/dataset/t@v1", {}, b'[{"a": 1}]', 400, "invalid name"),
    ],
)
def test_bad_puts(
    client: TestClient, path: str, params: dict, content: bytes, status: int, fragment: str
) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.put(path, params=params, content=content, headers=headers)
    assert_error(response, status, fragment)


def test_delete(client: TestClient, store: Omega) -> None:
    assert client.delete(STATS).json() == {"dropped": "stats"}
    assert not store.datasets.exists("stats")
    assert_error(client.get(STATS), 404, "does not exist")
    assert_error(client.delete(STATS), 404, "does not exist")
    assert_error(client.delete("/api/v1/dataset/..%2Fx"), 400, "invalid name")


def test_the_bucket_header_picks_the_bucket(client: TestClient, store: Omega) -> None:
    dev = {"Omops-Bucket": "dev"}
    assert client.put("/api/v1/dataset/only-dev", headers=dev, json=[{"a": 1}]).status_code == 200
    assert store["dev"].datasets.get("only-dev").to_dict(orient="records") == [{"a": 1}]
    assert_error(client.get("/api/v1/dataset/only-dev"), 404, "bucket 'default'")
    assert client.get("/api/v1/dataset/only-dev", headers=dev).json() == [{"a": 1}]
    names = [d["name"] for d in client.get("/api/v1/dataset", headers=dev).json()["datasets"]]
    assert names == ["only-dev"]
    assert_error(client.get(STATS, headers=dev), 404, "bucket 'dev'")
    assert_error(client.get(STATS, headers={"Omops-Bucket": "../x"}), 400, "invalid bucket")


# -- streamed reads: formats, windows, limits ----------------------------------


def parts_frame(store: Omega, parts: int = 4, rows: int = 25) -> pd.DataFrame:
    """Dataset 'parts': ``parts`` appended parts of ``rows`` rows, i 0.. and a float f."""
    frames = []
    for p in range(parts):
        i = np.arange(p * rows, (p + 1) * rows)
        frame = pd.DataFrame({"i": i, "f": i / 7, "s": [f"r{v}" for v in i]}, index=i)
        store.datasets.put(frame, "parts", append=p > 0)
        frames.append(frame)
    return pd.concat(frames)


def ndjson(response) -> list[dict]:  # noqa: ANN001
    return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.mark.parametrize(
    ("offset", "limit"), [(0, None), (0, 10), (20, 10), (24, 2), (25, 50), (99, 5), (100, 5)]
)
def test_a_window_across_parts(client: TestClient, store: Omega, offset, limit) -> None:
    want = parts_frame(store).iloc[offset : None if limit is None else offset + limit]
    params = {"offset": offset, **({} if limit is None else {"limit": limit})}
    rows = client.get("/api/v1/dataset/parts", params=params).json()
    assert rows == want.to_dict(orient="records")
    arrow = client.get("/api/v1/dataset/parts", params=params, headers={"Accept": ARROW}).content
    pd.testing.assert_frame_equal(pa.ipc.open_stream(arrow).read_all().to_pandas(), want)


def test_a_window_of_a_filtered_read(client: TestClient, store: Omega) -> None:
    frame = parts_frame(store)
    want = frame[frame.i % 3 == 0].iloc[5:12]
    params = {"i__in": ",".join(str(v) for v in range(0, 100, 3)), "offset": 5, "limit": 7}
    assert client.get("/api/v1/dataset/parts", params=params).json() == want.to_dict(
        orient="records"
    )


def test_every_format_gives_the_same_rows(client: TestClient, store: Omega) -> None:
    frame = parts_frame(store)
    path = "/api/v1/dataset/parts"
    records = client.get(path)
    assert records.headers["content-type"] == "application/json"
    assert records.json() == frame.to_dict(orient="records")
    lines = client.get(path, headers={"Accept": "application/x-ndjson"})
    assert lines.headers["content-type"] == "application/x-ndjson"
    assert ndjson(lines) == frame.to_dict(orient="records")
    split = client.get(path, params={"orient": "split"}).json()
    assert split == {"columns": ["i", "f", "s"], "data": frame.values.tolist()}
    arrow = client.get(path, headers={"Accept": f"text/html, {ARROW}; q=0.9"})
    assert arrow.headers["content-type"] == ARROW
    pd.testing.assert_frame_equal(pa.ipc.open_stream(arrow.content).read_all().to_pandas(), frame)
    parquet = client.get(path, headers={"Accept": PARQUET})
    assert parquet.headers["content-type"] == PARQUET
    pd.testing.assert_frame_equal(pq.read_table(io.BytesIO(parquet.content)).to_pandas(), frame)
    empty = {"limit": 0}
    assert client.get(path, params=empty).json() == []
    assert client.get(path, params={**empty, "orient": "split"}).json()["data"] == []
    assert client.get(path, params=empty, headers={"Accept": "application/x-ndjson"}).content == b""
    nothing = client.get(path, params=empty, headers={"Accept": ARROW}).content
    assert pa.ipc.open_stream(nothing).read_all().num_rows == 0


def test_json_types_follow_one_rule(client: TestClient, store: Omega) -> None:
    frame = pd.DataFrame(
        {
            "f": [0.1234567890123456, 1.7976931348623157e308, np.nan, -np.inf],
            "t": pd.to_datetime(
                ["2024-01-01 00:00:01.5", None, "2024-03-01 00:00:00.0", "2024-04-01 00:00:00.0"]
            ),
            "z": pd.date_range("2024-01-01 06:00", periods=4, tz="Europe/Zurich"),
            "d": [dt.date(2024, 1, 2)] * 4,
            "c": pd.Categorical(["a", "b", "a", None]),
            "nested": [{"x": 0.1 + 0.2, "l": [1e-300]}, None, {"x": 1.0, "l": []}, None],
        }
    )
    store.datasets.put(frame, "typed")
    first, second, _, fourth = client.get("/api/v1/dataset/typed").json()
    assert first == {
        "f": 0.1234567890123456,
        "t": "2024-01-01T00:00:01.500000",
        "z": "2024-01-01T05:00:00.000000Z",
        "d": "2024-01-02",
        "c": "a",
        "nested": {"x": 0.30000000000000004, "l": [1e-300]},
    }
    assert second["f"] == 1.7976931348623157e308 and second["t"] is None
    assert fourth["f"] is None and fourth["c"] is None  # no JSON form for -inf: null


def test_more_rows_than_the_server_answers_with_is_a_413(store: Omega) -> None:
    parts_frame(store)
    with local_client(create_app(store, max_rows=30)) as client:
        response = client.get("/api/v1/dataset/parts")
        assert_error(response, 413, "matches 100 rows", "limit= and offset=")
        assert_error(client.get("/api/v1/dataset/parts", params={"limit": 31}), 413, "31 rows")
        assert_error(client.get("/api/v1/dataset/parts", params={"i__lt": 40}), 413, "40 rows")
        assert len(client.get("/api/v1/dataset/parts", params={"limit": 30}).json()) == 30
        assert len(client.get("/api/v1/dataset/parts", params={"offset": 70}).json()) == 30
        assert len(client.get("/api/v1/dataset/parts", params={"i__lt": 30}).json()) == 30
        store.datasets.put(np.zeros((31, 2)), "array")
        assert_error(client.get("/api/v1/dataset/array"), 413, "31 rows")


def test_more_columns_than_the_server_takes_is_a_413(store: Omega) -> None:
    names = [f"c{i}" for i in range(11)]
    frame = pd.DataFrame([range(11)], columns=names)
    bodies = [
        ({"columns": names, "data": [list(range(11))]}, "application/json"),
        ({"data": {n: [1] for n in names}}, "application/json"),
        ([{n: 1 for n in names[:6]}, {n: 1 for n in names[5:]}], "application/json"),
        (arrow_bytes(frame), ARROW),
        (parquet_bytes(frame), PARQUET),
    ]
    with local_client(create_app(store, max_columns=10)) as client:
        for body, media_type in bodies:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            response = client.put(
                "/api/v1/dataset/wide", content=content, headers={"Content-Type": media_type}
            )
            assert_error(response, 413, "at most 10 per request")
        assert not store.datasets.exists("wide")
        ten = {"data": {n: [1] for n in names[:10]}}
        assert client.put("/api/v1/dataset/wide", json=ten).status_code == 200


def arrow_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


@pytest.mark.parametrize(("media_type", "encode"), [(ARROW, arrow_bytes), (PARQUET, parquet_bytes)])
def test_put_an_arrow_or_parquet_body(client: TestClient, store: Omega, media_type, encode) -> None:
    frame = pd.DataFrame(
        {
            "f": [0.1234567890123456, np.nan, np.inf],
            "when": pd.date_range("2024-01-01", periods=3, tz="UTC"),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "tags": [["a"], [], ["b", "c"]],
        },
        index=pd.Index([10, 20, 30], name="key"),
    )
    path = "/api/v1/dataset/binary"
    headers = {"Content-Type": media_type}
    response = client.put(path, content=encode(frame), headers=headers)
    assert response.status_code == 200, response.text
    got = store.datasets.get("binary")
    pd.testing.assert_frame_equal(got.drop(columns="tags"), frame.drop(columns="tags"))
    assert [list(v) for v in got["tags"]] == [["a"], [], ["b", "c"]]
    again = client.put(path, params={"append": "false"}, content=encode(frame), headers=headers)
    assert again.json()["rows"] == 3
    assert_error(client.put(path, content=b"not a table", headers=headers), 400, "is not")
    assert_error(client.put(path, content=b"", headers=headers), 400, "no body")


@pytest.mark.parametrize(
    ("params", "body_append", "rows"),
    [
        ({}, False, 1),
        ({}, True, 21),
        ({"append": "false"}, None, 1),
        ({}, None, 21),
        ({"append": "true"}, True, 21),
        ({"append": "false"}, False, 1),
    ],
)
def test_append_in_the_body_or_the_query(client: TestClient, params, body_append, rows) -> None:
    body: dict = {"columns": ["x", "sales", "y", "region"], "data": [[1.0, 10, 0, "EU"]]}
    if body_append is not None:
        body["append"] = body_append
    response = client.put(STATS, params=params, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == rows


def test_append_given_twice_must_agree(client: TestClient, store: Omega) -> None:
    revision = store.datasets.metadata("stats").revision
    body = {"data": {"x": [1.0], "sales": [1], "y": [0], "region": ["EU"]}, "append": False}
    assert_error(client.put(STATS, params={"append": "true"}, json=body), 400, "disagree")
    assert_error(client.put(STATS, json={**body, "append": "no"}), 400, "true or false")
    assert store.datasets.metadata("stats").revision == revision


def test_a_missing_blob_is_a_503_naming_the_dataset(client: TestClient, store: Omega) -> None:
    key = store.catalog.parts(store.catalog.lookup("default", "datasets", "stats", None))[0].blob
    os.remove(store.blobs.path(key))
    for headers in ({}, {"Accept": ARROW}):
        body = assert_error(client.get(STATS, headers=headers), 503, "storage_error")
        assert "datasets 'stats'" in body["message"] and key in body["message"]

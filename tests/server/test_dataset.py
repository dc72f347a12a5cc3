"""``/api/v1/dataset`` in-process: list, read with filters, write from JSON, delete."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega

from .support import assert_error, stats_frame

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

"""omega-ml's request forms, accepted by every server (no profile needed), in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from server.support import assert_error, classifier, local_client, stats_frame, wait_for_task

from omops.omega import Omega
from omops.server import create_app

PREDICT = "/api/v1/model/forecast/predict"
BODY = {"columns": ["x"], "data": [[1.0], [18.0]]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Omega]:
    om = Omega(home=str(tmp_path / "home"))
    om.datasets.put(stats_frame(), "stats", append=False)
    om.models.put(classifier(), "forecast")
    om["mybucket"].models.put(classifier(flipped=True), "forecast")
    yield om
    om.close()


@pytest.fixture
def client(store: Omega) -> Iterator[TestClient]:
    with local_client(create_app(store)) as test_client:
        yield test_client


# -- the bucket header ----------------------------------------------------------


def test_the_bucket_header_selects_the_bucket(client: TestClient) -> None:
    default = client.post(PREDICT, json=BODY).json()["result"]
    assert default == [0, 1]
    assert client.post(PREDICT, json=BODY, headers={"bucket": "mybucket"}).json()["result"] == [
        1,
        0,
    ]
    same = {"bucket": "mybucket", "Omops-Bucket": "mybucket"}
    assert client.post(PREDICT, json=BODY, headers=same).json()["result"] == [1, 0]


def test_bucket_headers_that_disagree_are_refused(client: TestClient) -> None:
    headers = {"bucket": "mybucket", "Omops-Bucket": "default"}
    for response in (
        client.post(PREDICT, json=BODY, headers=headers),
        client.get("/api/v1/dataset/stats", headers=headers),
        client.get("/api/v1/model", headers=headers),
    ):
        assert_error(response, 400, "invalid_data", "name different buckets")
    assert_error(
        client.post(PREDICT, json=BODY, headers={"bucket": "../etc"}), 400, "invalid bucket"
    )


def test_the_bucket_header_is_authorized_like_omops_bucket(store: Omega) -> None:
    token, _ = store.catalog.api_keys.create(buckets=["default"], role="read")
    with local_client(create_app(store, require_keys=True)) as client:
        key = {"Authorization": f"Bearer {token}"}
        assert client.post(PREDICT, json=BODY, headers=key).status_code == 200
        refused = client.post(PREDICT, json=BODY, headers={**key, "bucket": "mybucket"})
        assert_error(refused, 403, "may not read in bucket 'mybucket'")


def test_omega_ml_api_key_header(store: Omega) -> None:
    """OmegaRestApiAuth sends 'Authorization: ApiKey <user>:<key>'."""
    token, _ = store.catalog.api_keys.create(buckets=["default"], role="read")
    with local_client(create_app(store, require_keys=True)) as client:
        ok = client.post(PREDICT, json=BODY, headers={"Authorization": f"ApiKey jane:{token}"})
        assert ok.status_code == 200, ok.text
        wrong = client.post(PREDICT, json=BODY, headers={"Authorization": "ApiKey jane:nope"})
        assert_error(wrong, 401)
        empty = client.post(PREDICT, json=BODY, headers={"Authorization": "ApiKey jane:"})
        assert_error(empty, 401, "Bearer")


# -- async as a header ---------------------------------------------------------------


def test_the_async_header_starts_a_task(client: TestClient) -> None:
    started = client.post(PREDICT, json=BODY, headers={"async": "true"})
    assert started.status_code == 202, started.text
    done = wait_for_task(client, started.headers["location"])
    assert done["status"] == "SUCCESS" and done["result"] == [0, 1]


def test_the_async_header_false_makes_fit_wait(client: TestClient) -> None:
    fit = "/api/v1/model/forecast/fit"
    params = {"datax": "stats[x]", "datay": "stats[y]"}
    waited = client.post(fit, params=params, headers={"async": "false"})
    assert waited.status_code == 200, waited.text
    assert waited.json()["result"]["model"] == "forecast"
    assert client.post(fit, params=params).status_code == 202  # the native default


@pytest.mark.parametrize(
    ("params", "headers", "fragment"),
    [
        ({}, {"async": "maybe"}, "async takes true or false"),
        ({"async": "true"}, {"async": "false"}, "disagree"),
    ],
)
def test_bad_async_requests(client: TestClient, params, headers, fragment) -> None:
    assert_error(client.post(PREDICT, json=BODY, params=params, headers=headers), 400, fragment)


def test_async_true_in_both_places_is_fine(client: TestClient) -> None:
    response = client.post(PREDICT, json=BODY, params={"async": "1"}, headers={"async": "yes"})
    assert response.status_code == 202


# -- trailing slashes ------------------------------------------------------------------


def test_a_trailing_slash_names_the_same_object(client: TestClient) -> None:
    assert client.get("/api/v1/model/forecast/").json()["name"] == "forecast"
    assert client.post(PREDICT + "/", json=BODY).json()["result"] == [0, 1]
    assert [m["name"] for m in client.get("/api/v1/model/").json()["models"]] == ["forecast"]
    rows = client.get("/api/v1/dataset/stats/", params={"x__gte": 18}).json()
    assert [r["x"] for r in rows] == [18.0, 19.0]
    assert client.put("/api/v1/dataset/new/", json={"data": {"a": [1]}}).status_code == 200
    assert client.get("/api/v1/dataset/new").json() == [{"a": 1}]


def test_only_one_trailing_slash_goes(client: TestClient) -> None:
    assert_error(client.get("/api/v1/model/forecast//"), 400, "invalid_name")


# -- dataset bodies ------------------------------------------------------------------------


def test_dtypes_set_the_column_types(client: TestClient, store: Omega) -> None:
    body = {
        "data": {"n": [1.0, 2.0], "s": [1, 2], "f": [1, 2]},
        "dtypes": {"n": "int64", "s": "str", "f": "float32"},
    }
    assert client.put("/api/v1/dataset/typed", json=body).status_code == 200
    frame = store.datasets.get("typed")
    assert frame["n"].dtype == np.int64 and frame["f"].dtype == np.float32
    assert list(frame["s"]) == ["1", "2"]


@pytest.mark.parametrize(
    ("dtypes", "fragment"),
    [
        ({"nope": "int64"}, "names column(s) ['nope']"),
        ({"s": "no-such-type"}, "cannot become 'no-such-type'"),
        ({"s": "int64"}, "cannot become 'int64'"),
        (["int64"], "maps column names to type names"),
        ({"s": 5}, "maps column names to type names"),
    ],
)
def test_bad_dtypes_are_400(client: TestClient, store: Omega, dtypes, fragment) -> None:
    body = {"data": {"s": ["a", "b"]}, "dtypes": dtypes}
    assert_error(client.put("/api/v1/dataset/typed", json=body), 400, fragment)
    assert not store.datasets.exists("typed")


def test_a_to_json_body_keeps_its_index(client: TestClient, store: Omega) -> None:
    """``DataFrame.to_json()``: {column: {index: value}}, as omega-ml's guide writes datasets."""
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, None, 1.5]}, index=[10, 20, 30])
    body = {"data": orjson.loads(frame.to_json())}
    assert body["data"]["y"] == {"10": 0.5, "20": None, "30": 1.5}
    assert client.put("/api/v1/dataset/keyed", json=body).status_code == 200
    stored = store.datasets.get("keyed")
    assert list(stored.index) == [10, 20, 30] and list(stored["x"]) == [1, 2, 3]
    assert np.isnan(stored["y"].iloc[1])
    labels = {"data": {"x": {"a": 1, "b": 2}, "y": {"b": 5}}}
    assert client.put("/api/v1/dataset/labels", json=labels).status_code == 200
    stored = store.datasets.get("labels")
    assert list(stored.index) == ["a", "b"] and stored["y"].isna().tolist() == [True, False]


def test_predict_takes_data_as_columns_with_columns(client: TestClient) -> None:
    body = {"columns": ["x"], "data": {"x": [1.0, 18.0], "unused": [0, 0]}}
    assert client.post(PREDICT, json=body).json()["result"] == [0, 1]
    missing = {"columns": ["x"], "data": {"y": [1.0]}}
    assert_error(client.post(PREDICT, json=missing), 400, "lacks the column(s) ['x']")


def test_a_plain_list_dataset_is_one_column(client: TestClient, store: Omega) -> None:
    """``om.datasets.put([5], 'foo')`` then ``?datax=foo``: one row per item."""
    from sklearn.linear_model import LinearRegression

    x = np.arange(10.0).reshape(-1, 1)
    store.models.put(LinearRegression().fit(x, x.ravel() * 2), "regression")
    store.datasets.put([5, 6], "foo", append=False)
    answer = client.post("/api/v1/model/regression/predict", params={"datax": "foo"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == pytest.approx([10.0, 12.0])

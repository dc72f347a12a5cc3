"""End to end: a real ``om runtime serve`` process, spoken to over HTTP.

One server (keyless, loopback, ``--max-body 1048576``) serves the whole
module; objects are prepared through a second Omega on the same home, which is
also how a new model revision reaches the running server.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from omops.omega import Omega

from .support import (
    INPUT_SHAPES,
    PREDICT,
    X_SPLIT,
    Server,
    assert_error,
    classifier,
    stats_frame,
    wait_for_task,
)


@pytest.fixture
def http(served: Server) -> httpx.Client:
    with served.client() as client:
        yield client


def test_health_openapi_and_docs(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok", "version": "0.1.0"}
    paths = http.get("/openapi.json").json()["paths"]
    assert "/api/v1/model/{name}/{action}" in paths and "/api/v1/dataset/{name}" in paths
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize("shape", sorted(INPUT_SHAPES))
def test_predict_in_every_input_shape(http: httpx.Client, served_store: Omega, shape: str) -> None:
    response = http.post(PREDICT, json=INPUT_SHAPES[shape])
    assert response.status_code == 200, response.text
    revision = served_store.models.metadata("forecast@v1").revision
    assert response.json() == {
        "model": "forecast",
        "revision": revision,
        "rows": 2,
        "result": [0, 1],
    }


def test_predict_with_put_and_from_a_dataset(http: httpx.Client) -> None:
    assert http.put(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]
    response = http.post(PREDICT, params={"datax": "stats[x]"})
    assert response.json()["result"] == [0] * 10 + [1] * 10
    proba = http.post("/api/v1/model/forecast/predict_proba", json=X_SPLIT).json()["result"]
    assert proba[0][0] > 0.5 > proba[1][0]


def test_models_list_and_describe(http: httpx.Client) -> None:
    names = [m["name"] for m in http.get("/api/v1/model").json()["models"]]
    assert "forecast" in names
    described = http.get("/api/v1/model/forecast@v1").json()
    assert described["kind"] == "sklearn.joblib" and described["input_columns"] == ["x"]
    assert "v1" in described["tags"]


def test_name_at_tag_and_a_new_put_without_restart(http: httpx.Client, served_store: Omega) -> None:
    served_store.models.put(classifier(), "live", tag="stable")
    first = http.post("/api/v1/model/live/predict", json=X_SPLIT).json()
    assert first["result"] == [0, 1]
    second = served_store.models.put(classifier(flipped=True), "live").revision
    answer = http.post("/api/v1/model/live/predict", json=X_SPLIT).json()
    assert answer == {**first, "revision": second, "result": [1, 0]}
    pinned = http.post("/api/v1/model/live@stable/predict", json=X_SPLIT).json()
    assert pinned["revision"] == first["revision"] and pinned["result"] == [0, 1]
    by_prefix = http.post(f"/api/v1/model/live@{second[:10]}/predict", json=X_SPLIT).json()
    assert by_prefix["result"] == [1, 0]
    assert_error(http.post("/api/v1/model/live@nope/predict", json=X_SPLIT), 404, "nope")


def test_async_fit_answers_202_then_the_result(http: httpx.Client, served_store: Omega) -> None:
    served_store.models.put(classifier(flipped=True), "refit")
    params = {"datax": "stats[x]", "datay": "stats[y]"}
    response = http.post("/api/v1/model/refit/fit", params=params)
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    assert location.startswith("/api/v1/task/") and location.endswith("/result")
    done = wait_for_task(http, location)
    assert done["status"] == "SUCCESS", done
    assert done["result"]["revision"] == served_store.models.metadata("refit").revision
    assert http.get(location.replace("/result", "/status")).json()["status"] == "SUCCESS"
    assert http.post("/api/v1/model/refit/predict", json=X_SPLIT).json()["result"] == [0, 1]


def test_async_fit_from_the_body_and_async_predict(http: httpx.Client, served_store: Omega) -> None:
    served_store.models.put(classifier(flipped=True), "bodyfit")
    body = {"data": {"x": [0.0, 1.0, 18.0, 19.0]}, "y": [0, 0, 1, 1]}
    fitted = http.put("/api/v1/model/bodyfit/fit", json=body)
    assert wait_for_task(http, fitted.headers["location"])["status"] == "SUCCESS"
    predicted = http.post("/api/v1/model/bodyfit/predict", params={"async": "true"}, json=X_SPLIT)
    assert predicted.status_code == 202
    assert wait_for_task(http, predicted.headers["location"])["result"] == [0, 1]


def test_dataset_filters_columns_orient_limit_offset(http: httpx.Client) -> None:
    rows = http.get(
        "/api/v1/dataset/stats",
        params={"sales__gte": "100", "columns": "sales,x", "limit": "3", "offset": "2"},
    ).json()
    assert rows == [{"sales": s, "x": s / 10} for s in (120, 130, 140)]
    split = http.get(
        "/api/v1/dataset/stats", params={"region": "US", "x__lt": "6", "orient": "split"}
    ).json()
    assert split["columns"] == list(stats_frame().columns)
    assert [row[0] for row in split["data"]] == [1.0, 3.0, 5.0]
    assert_error(http.get("/api/v1/dataset/stats", params={"sales__gte": "lots"}), 400, "lots")
    assert_error(http.get("/api/v1/dataset/stats", params={"orient": "table"}), 422)


def test_dataset_put_append_replace_delete(http: httpx.Client, served_store: Omega) -> None:
    path = "/api/v1/dataset/e2e/table"
    assert http.put(path, json={"columns": ["a"], "data": [[1], [2]]}).json()["rows"] == 2
    assert http.put(path, json={"data": {"a": [3]}}).json()["rows"] == 3
    assert served_store.datasets.get("e2e/table")["a"].tolist() == [1, 2, 3]
    assert http.put(path, params={"append": "false"}, json=[{"a": 9}]).json()["rows"] == 1
    assert http.get(path).json() == [{"a": 9}]
    assert "e2e/table" in [d["name"] for d in http.get("/api/v1/dataset").json()["datasets"]]
    assert http.delete(path).json() == {"dropped": "e2e/table"}
    assert_error(http.get(path), 404, "does not exist")
    assert not served_store.datasets.exists("e2e/table")


def test_the_bucket_header(http: httpx.Client, served_store: Omega) -> None:
    dev = served_store["dev"]
    dev.models.put(classifier(flipped=True), "forecast")
    in_dev = {"Omops-Bucket": "dev"}
    assert http.post(PREDICT, headers=in_dev, json=X_SPLIT).json()["result"] == [1, 0]
    assert http.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]
    assert http.put("/api/v1/dataset/devdata", headers=in_dev, json=[{"a": 1}]).status_code == 200
    assert dev.datasets.exists("devdata") and not served_store.datasets.exists("devdata")
    assert_error(http.get("/api/v1/dataset/devdata"), 404, "bucket 'default'")
    assert http.get("/api/v1/dataset/devdata", headers=in_dev).json() == [{"a": 1}]
    assert_error(http.get("/api/v1/model", headers={"Omops-Bucket": "no/pe"}), 400, "bucket")


def test_bad_input_over_http(http: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(http.post(PREDICT, content=b"{nope", headers=headers), 400, "not valid JSON")
    assert_error(http.post(PREDICT, json={"columns": ["z"], "data": [[1]]}), 400, "lacks column")
    assert_error(http.post("/api/v1/model/nope/predict", json=X_SPLIT), 404, "'nope'")
    big = orjson.dumps({"columns": ["x"], "data": [[1.0]] * 200_000})
    assert_error(http.post(PREDICT, content=big, headers=headers), 413, "1048576 bytes")


def test_metrics_count_predictions(http: httpx.Client) -> None:
    def predictions() -> float:
        for line in http.get("/metrics").text.splitlines():
            if line.startswith('omops_predictions_total{bucket="default",model="forecast"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = predictions()
    assert http.post(PREDICT, json={"data": {"x": [1.0, 2.0, 3.0]}}).status_code == 200
    assert predictions() == before + 3
    assert 'route="/api/v1/model/{name:path}/{action}",status="200"' in http.get("/metrics").text

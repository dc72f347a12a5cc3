"""``/api/v1/model`` in-process: list, describe, every action and input shape, revisions."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

from omops.omega import Omega

from .support import (
    INPUT_SHAPES,
    PREDICT,
    X_SPLIT,
    SlowFit,
    assert_error,
    classifier,
    wait_for_task,
)


def test_list_models(client: TestClient, store: Omega) -> None:
    store.models.put(LinearRegression(), "team/lr")
    response = client.get("/api/v1/model")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert set(models) == {"forecast", "team/lr"}
    assert models["forecast"]["kind"] == "sklearn.joblib"


def test_list_models_hides_internal_names_unless_asked(client: TestClient, store: Omega) -> None:
    store.models.put(LinearRegression(), "_experiments/exp/1/lr")
    names = [m["name"] for m in client.get("/api/v1/model").json()["models"]]
    assert names == ["forecast"]
    listed = client.get("/api/v1/model", params={"hidden": "true"}).json()["models"]
    assert [m["name"] for m in listed] == ["_experiments/exp/1/lr", "forecast"]
    assert client.get("/api/v1/model/_experiments/exp/1/lr").json()["kind"] == "sklearn.joblib"


def test_describe_model(client: TestClient, store: Omega) -> None:
    store.models.put(classifier(flipped=True), "forecast")
    body = client.get("/api/v1/model/forecast").json()
    assert body["name"] == "forecast" and body["kind"] == "sklearn.joblib"
    assert body["revision"] == store.models.metadata("forecast").revision
    assert [r["tags"] for r in body["revisions"]] == [["v1"], ["latest"]]
    assert body["tags"] == ["latest"]
    assert body["input_columns"] == ["x"]
    assert body["n_features"] == 1
    assert {"predict", "fit", "score"} <= set(body["actions"])


def test_describe_a_revision_by_tag(client: TestClient, store: Omega) -> None:
    first = store.models.metadata("forecast").revision
    store.models.put(classifier(flipped=True), "forecast")
    body = client.get("/api/v1/model/forecast@v1").json()
    assert body["revision"] == first and body["tags"] == ["v1"]
    assert len(body["revisions"]) == 2


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/api/v1/model/nope", 404, "does not exist"),
        ("/api/v1/model/forecast@nope", 404, "no tag or revision"),
        ("/api/v1/model/a%2F..%2Fb", 400, "invalid name"),
    ],
)
def test_describe_unknown(client: TestClient, path: str, status: int, fragment: str) -> None:
    assert_error(client.get(path), status, fragment)


@pytest.mark.parametrize("shape", sorted(INPUT_SHAPES))
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_predict_in_every_input_shape(
    client: TestClient, store: Omega, shape: str, method: str
) -> None:
    response = client.request(method, PREDICT, json=INPUT_SHAPES[shape])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model": "forecast",
        "revision": store.models.metadata("forecast").revision,
        "rows": 2,
        "result": [0, 1],
    }


def test_predict_from_a_dataset(client: TestClient) -> None:
    response = client.post(PREDICT, params={"datax": "stats[x]"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == [0] * 10 + [1] * 10


def test_predict_from_a_filtered_wider_dataset(client: TestClient) -> None:
    """Extra columns are dropped: the model gets the columns it was fitted with."""
    response = client.post(PREDICT, params={"datax": "stats"})
    assert response.json()["rows"] == 20
    body = {"columns": ["region", "x"], "data": [["EU", 18.0], ["US", 1.0]]}
    assert client.post(PREDICT, json=body).json()["result"] == [1, 0]


def test_columns_in_another_order_are_aligned(client: TestClient, store: Omega) -> None:
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [0.0, 10.0, 20.0, 30.0]})
    store.models.put(LinearRegression().fit(frame, frame["a"] + 2 * frame["b"]), "lin")
    body = {"columns": ["b", "a"], "data": [[10.0, 1.0]]}
    result = client.post("/api/v1/model/lin/predict", json=body).json()["result"]
    assert result == [pytest.approx(21.0)]


def test_predict_proba_and_decision_function(client: TestClient) -> None:
    proba = client.post("/api/v1/model/forecast/predict_proba", json=X_SPLIT).json()["result"]
    assert len(proba) == 2 and all(len(p) == 2 for p in proba)
    assert proba[0][0] > 0.5 and proba[1][1] > 0.5
    scores = client.post("/api/v1/model/forecast/decision_function", json=X_SPLIT).json()
    assert scores["result"][0] < 0 < scores["result"][1]


def test_score_with_body_targets_and_with_datasets(client: TestClient) -> None:
    body = {**X_SPLIT, "y": [0, 1]}
    assert client.post("/api/v1/model/forecast/score", json=body).json()["result"] == 1.0
    wrong = {**X_SPLIT, "y": [1, 0]}
    assert client.post("/api/v1/model/forecast/score", json=wrong).json()["result"] == 0.0
    params = {"datax": "stats[x]", "datay": "stats[y]"}
    assert client.post("/api/v1/model/forecast/score", params=params).json()["result"] == 1.0


def test_transform(client: TestClient, store: Omega) -> None:
    store.models.put(StandardScaler().fit(pd.DataFrame({"x": [0.0, 2.0]})), "scaler")
    response = client.post("/api/v1/model/scaler/transform", json={"data": {"x": [0.0, 1.0]}})
    assert response.json()["result"] == [[-1.0], [0.0]]


def test_an_action_the_model_lacks_is_a_400(client: TestClient) -> None:
    assert_error(client.post("/api/v1/model/forecast/transform", json=X_SPLIT), 400, "transform")


@pytest.mark.parametrize(
    ("reference", "expected"), [("forecast@v1", [0, 1]), ("forecast@latest", [1, 0])]
)
def test_name_at_tag_picks_the_revision(
    client: TestClient, store: Omega, reference: str, expected: list[int]
) -> None:
    store.models.put(classifier(flipped=True), "forecast")
    response = client.post(f"/api/v1/model/{reference}/predict", json=X_SPLIT)
    assert response.json()["result"] == expected
    assert response.json()["model"] == "forecast"


def test_name_at_revision_prefix(client: TestClient, store: Omega) -> None:
    first = store.models.metadata("forecast").revision
    store.models.put(classifier(flipped=True), "forecast")
    response = client.post(f"/api/v1/model/forecast@{first[:8]}/predict", json=X_SPLIT)
    assert response.json()["revision"] == first
    assert response.json()["result"] == [0, 1]


def test_a_new_put_is_served_by_the_next_request(client: TestClient, store: Omega) -> None:
    assert client.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]
    revision = store.models.put(classifier(flipped=True), "forecast").revision
    answer = client.post(PREDICT, json=X_SPLIT).json()
    assert answer["result"] == [1, 0] and answer["revision"] == revision


def test_async_predict_answers_202_with_a_location(client: TestClient) -> None:
    response = client.post(PREDICT, params={"async": "true"}, json=X_SPLIT)
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    assert location == f"/api/v1/task/{response.json()['task']}/result"
    assert response.json()["location"] == location
    done = wait_for_task(client, location)
    assert done["status"] == "SUCCESS" and done["result"] == [0, 1]


def test_fit_from_datasets_stores_a_new_revision(client: TestClient, store: Omega) -> None:
    store.models.put(classifier(flipped=True), "forecast")
    before = store.models.metadata("forecast").revision
    params = {"datax": "stats[x]", "datay": "stats[y]"}
    response = client.post("/api/v1/model/forecast/fit", params=params)
    assert response.status_code == 202, response.text
    done = wait_for_task(client, response.headers["location"])
    assert done["status"] == "SUCCESS", done
    assert done["result"]["revision"] == store.models.metadata("forecast").revision != before
    assert client.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]


def test_fit_and_partial_fit_from_the_body(client: TestClient, store: Omega) -> None:
    store.models.put(SlowFit(delay=0.0), "slow")
    body = {"columns": ["x"], "data": [[1.0], [2.0]], "y": [3, 4]}
    for action in ("fit", "partial_fit"):
        response = client.put(f"/api/v1/model/slow/{action}", json=body)
        assert response.status_code == 202, response.text
        done = wait_for_task(client, response.headers["location"])
        if action == "fit":
            assert done["status"] == "SUCCESS", done
        else:  # SlowFit has no partial_fit: the task fails and says why
            assert done["status"] == "FAILURE" and "partial_fit" in str(done["error"])
    assert client.post("/api/v1/model/slow/predict", json=body).json()["result"] == [3, 3]
    names = [d["name"] for d in client.get("/api/v1/dataset").json()["datasets"]]
    assert names == ["stats"], "temporary inputs of tasks are not listed"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"columns": ["z"], "data": [[1.0]]}, "lacks column(s) ['x']"),
        ({"columns": ["x"], "data": [[1.0, 2.0]]}, "row 0 has 2 values but there are 1 columns"),
        ({"columns": ["x", "x"], "data": [[1.0, 2.0]]}, "duplicate"),
        ({"columns": "x", "data": [[1.0]]}, "'columns' must be a list"),
        ({"columns": ["x"], "data": "x"}, "'data' must be a list of rows"),
        ({"columns": ["x"], "data": {"z": [1]}}, "'data' lacks the column(s) ['x']"),
        ({"columns": ["x"], "data": [["a"]]}, "could not predict"),
        ({"columns": ["x"], "data": [[[1.0]]]}, "could not predict"),
        ({"columns": ["x"], "data": [[None]]}, "NaN"),
        ({"columns": ["x"], "data": []}, "the input has no rows"),
        ({"data": {"x": [1.0, 2.0], "w": [1.0]}}, "one length"),
        ({"data": {"x": 1.0}}, "one length"),
        ({"data": {}}, "names no columns"),
        ([], "names no columns"),
        ([{"x": 1.0}, 2], "send {"),
        (5, "send {"),
        ("text", "send {"),
        ({"columns": ["x"], "data": [[1.0]], "y": [[0]]}, '"y" must be a list'),
        ({"columns": ["x"], "data": [[1.0]], "y": "stats"}, '"y" must be a list'),
    ],
)
def test_bad_input_is_a_400(client: TestClient, body: object, fragment: str) -> None:
    assert_error(client.post(PREDICT, json=body), 400, fragment)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "predict needs input data"),
        (b"   ", "predict needs input data"),
        (b"{bad", "not valid JSON"),
        (b"[1, 2", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"data": {"x": [1e999999]}}', "not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(
    client: TestClient, content: bytes, fragment: str
) -> None:
    headers = {"Content-Type": "application/json"}
    assert_error(client.post(PREDICT, content=content, headers=headers), 400, fragment)


@pytest.mark.parametrize(
    ("path", "params", "body", "status", "fragment"),
    [
        ("/api/v1/model/nope/predict", {}, X_SPLIT, 404, "model 'nope' does not exist"),
        ("/api/v1/model/forecast@nope/predict", {}, X_SPLIT, 404, "no tag or revision"),
        ("/api/v1/model/forecast/explode", {}, X_SPLIT, 400, "is not one of"),
        ("/api/v1/model/forecast/FIT", {}, X_SPLIT, 400, "is not one of"),
        ("/api/v1/model/a%2F..%2Fb/predict", {}, X_SPLIT, 400, "invalid name"),
        (PREDICT, {"datax": "nope"}, None, 404, "dataset 'nope' does not exist"),
        (PREDICT, {"datax": "stats[nope]"}, None, 400, "unknown column"),
        (PREDICT, {"datax": "../etc"}, None, 400, "invalid name"),
        (PREDICT, {"async": "maybe"}, X_SPLIT, 400, "async takes true or false"),
        ("/api/v1/model/forecast/score", {}, X_SPLIT, 400, "score needs targets"),
        ("/api/v1/model/forecast/score", {}, {**X_SPLIT, "y": [1]}, 400, "2 input rows but 1"),
        ("/api/v1/model/forecast/fit", {"datax": "nope"}, None, 404, "dataset 'nope'"),
        ("/api/v1/model/forecast/fit", {"datax": "stats[x]", "datay": "nope"}, None, 404, "'nope'"),
        ("/api/v1/model/nope/fit", {"datax": "stats[x]"}, None, 404, "model 'nope'"),
        ("/api/v1/model/forecast/fit", {}, {**X_SPLIT, "y": [[1, 2], [3]]}, 400, '"y" must'),
        ("/api/v1/model/forecast/fit", {}, None, 400, "fit needs input data"),
    ],
)
def test_bad_requests(
    client: TestClient, path: str, params: dict, body: object, status: int, fragment: str
) -> None:
    response = (
        client.post(path, params=params, json=body) if body else client.post(path, params=params)
    )
    assert_error(response, status, fragment)


def test_unknown_method_is_a_405(client: TestClient) -> None:
    assert_error(client.patch(PREDICT, json=X_SPLIT), 405, "method_not_allowed")
    answer = client.get("/api/v1/model/forecast/predict")
    assert_error(answer, 405, "send it with POST")
    assert answer.headers["allow"] == "POST, PUT"
    assert_error(client.get("/api/v1/model/nope/predict"), 405, "send it with POST")
    assert_error(client.get("/api/v1/model/forecast/nope"), 404, "does not exist")


def test_data_is_the_seed_style_alias_of_datax(client: TestClient) -> None:
    via_datax = client.post(PREDICT, params={"datax": "stats[x]"}).json()
    via_data = client.post(PREDICT, params={"data": "stats[x]"}).json()
    assert via_data == via_datax and via_data["rows"] == 20
    both = client.post(PREDICT, params={"data": "stats[x]"}, json=X_SPLIT)
    assert_error(both, 400, "either as the body or as ?datax=")


def test_arrow_bodies_and_answers(client: TestClient, store: Omega) -> None:
    import pyarrow as pa

    table = pa.table({"x": [1.0, 18.0]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = "application/vnd.apache.arrow.stream"
    as_json = client.post(
        PREDICT, content=sink.getvalue().to_pybytes(), headers={"Content-Type": arrow}
    )
    assert as_json.json()["result"] == [0, 1]
    as_arrow = client.post(
        PREDICT,
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": arrow, "Accept": arrow},
    )
    assert as_arrow.headers["content-type"] == arrow
    assert as_arrow.headers["omops-model"] == "forecast" and as_arrow.headers["omops-rows"] == "2"
    assert pa.ipc.open_stream(as_arrow.content).read_all().column("result").to_pylist() == [0, 1]
    proba = client.post(
        "/api/v1/model/forecast/predict_proba",
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": arrow, "Accept": arrow},
    )
    assert pa.ipc.open_stream(proba.content).read_all().column_names == ["0", "1"]
    labels = LogisticRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), list("aabb"))
    store.models.put(labels, "labels")
    named = client.post(
        "/api/v1/model/labels/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": arrow, "Accept": arrow},
    )  # string classes come back as an Arrow string column
    assert named.headers["content-type"] == arrow
    assert pa.ipc.open_stream(named.content).read_all().column("result").to_pylist() == ["a", "b"]
    broken = client.post(PREDICT, content=b"not arrow", headers={"Content-Type": arrow})
    assert_error(broken, 400, "not an Arrow IPC stream")
    missing = pa.table({"z": [1.0]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, missing.schema) as writer:
        writer.write_table(missing)
    wrong = client.post(
        PREDICT, content=sink.getvalue().to_pybytes(), headers={"Content-Type": arrow}
    )
    assert_error(wrong, 400, "input lacks column(s) ['x']")

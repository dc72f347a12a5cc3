"""``GET /api/v1/model/{name}/drift`` and ``/monitor``: in-process, then over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from server.support import Server, assert_error, local_client

from omops.omega import Omega
from omops.server import create_app

from .support import MODEL, REFERENCE, predict, store, traffic

DRIFT, MONITOR = f"/api/v1/model/{MODEL}/drift", f"/api/v1/model/{MODEL}/monitor"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Omega, TestClient]]:
    om = Omega(home=str(tmp_path / "home"))
    store(om)
    with local_client(create_app(om)) as client:
        yield om, client
    om.close()


def test_drift_answers_the_report(served):
    om, client = served
    predict(om, traffic(300, shift=1.0))

    response = client.get(DRIFT, params={"since": "1h"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert {"model", "since", "until", "rows", "reference", "drifted", "features"} <= set(body)
    assert body["model"] == MODEL and body["rows"] == 300 and body["drifted"] is True
    assert body["reference"]["name"] == REFERENCE
    assert [f["name"] for f in body["features"] if f["drifted"]] == ["a"]
    for feature in body["features"]:
        assert {"name", "kind", "test", "statistic", "p_value", "psi", "drifted"} <= set(feature)
    # reading raises no alerts: a GET changes nothing
    assert body["alerts"] == []
    assert om.runtime.experiment("prod").data(event="alert", run="all").empty


def test_drift_with_another_reference_and_an_empty_window(served):
    om, client = served
    om.datasets.put(traffic(2000, seed=9, shift=1.0), "shifted_X", append=False)
    predict(om, traffic(300, shift=1.0))

    other = client.get(DRIFT, params={"since": "1h", "reference": "shifted_X"}).json()
    assert other["drifted"] is False and other["reference"]["name"] == "shifted_X"
    empty = client.get(DRIFT, params={"since": "2000-01-01", "until": "2000-01-02"}).json()
    assert empty["status"] == "no_data" and empty["rows"] == 0 and empty["drifted"] is False


def test_bad_input_is_a_json_4xx(served):
    om, client = served
    assert_error(client.get(DRIFT, params={"since": "soon"}), 400, "invalid_query", "not a time")
    assert_error(client.get(DRIFT, params={"reference": "nope"}), 404, "not_found")
    om.datasets.put(traffic(10)[["a"]], "partial", append=False)
    assert_error(client.get(DRIFT, params={"reference": "partial"}), 400, "invalid_data", "'b'")
    assert_error(client.get("/api/v1/model/nope/drift"), 404, "does not exist")
    om.models.put(om.models.get(MODEL), "untracked")
    assert_error(client.get("/api/v1/model/untracked/drift"), 404, "not tracked")
    assert_error(client.get("/api/v1/model/untracked/monitor"), 404, "not tracked")
    assert_error(client.get(MONITOR, params={"since": "2d", "bucket": "1m"}), 400, "buckets")
    assert_error(client.get(MONITOR, params={"bucket": "-1m"}), 400, "not a duration")


def test_monitor_answers_series_and_drift_series(served):
    om, client = served
    predict(om, traffic(300, shift=1.0))

    response = client.get(MONITOR, params={"since": "10m", "bucket": "1m"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["predictions"] == 3
    point = next(p for p in body["series"] if p["predictions"])
    assert set(point) == {"t", "predictions", "errors", "p50_ms", "p95_ms", "p99_ms"}
    assert point["p50_ms"] > 0
    features = {p["feature"]: p for p in body["drift_series"]}
    assert set(features) == {"a", "b", "c"} and features["a"]["drifted"] is True
    assert set(features["a"]) >= {"t", "feature", "psi", "drifted"}


def test_the_model_routes_still_answer(served):
    om, client = served
    assert client.get(f"/api/v1/model/{MODEL}").json()["name"] == MODEL
    response = client.post(f"/api/v1/model/{MODEL}/predict", json=traffic(2).to_dict("split"))
    assert response.status_code == 200, response.text
    # the REST prediction was tracked, with its latency
    (value,) = om.runtime.experiment("prod").data(event="predict")["value"]
    assert value["status"] == "ok" and value["latency_ms"] > 0


def test_openapi_documents_both_routes(served):
    _, client = served
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/model/{name}/drift", "/api/v1/model/{name}/monitor"):
        operation = paths[path]["get"]
        assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert "features" in schema["properties"] or "series" in schema["properties"]
        names = {p["name"] for p in operation["parameters"]}
        assert {"since", "until", "Omops-Bucket"} <= names


def test_keys_and_buckets_as_for_models(tmp_path):
    om = Omega(home=str(tmp_path / "home"))
    dev = om["dev"]
    store(dev)
    predict(dev, traffic(300))
    reader, _ = om.catalog.api_keys.create(role="read", buckets=["dev"])
    elsewhere, _ = om.catalog.api_keys.create(role="write", buckets=["prod"])
    with TestClient(create_app(om, require_keys=True)) as client:
        assert_error(client.get(DRIFT, headers={"Omops-Bucket": "dev"}), 401, "needs an API key")
        forbidden = {"X-API-Key": elsewhere, "Omops-Bucket": "dev"}
        assert_error(client.get(DRIFT, headers=forbidden), 403, "forbidden")
        allowed = {"X-API-Key": reader, "Omops-Bucket": "dev"}
        assert client.get(DRIFT, params={"since": "1h"}, headers=allowed).json()["rows"] == 300
        assert client.get(MONITOR, headers=allowed).json()["predictions"] == 3
        # in the default bucket the model does not exist
        assert_error(client.get(DRIFT, headers={"X-API-Key": reader}), 403, "forbidden")
    om.close()


def test_over_real_http(tmp_path):
    """A served model tracked with a reference: REST predictions, then its drift over HTTP."""
    home = tmp_path / "served"
    om = Omega(home=str(home))
    store(om)
    om.close()
    with Server(home) as server, server.client() as client:
        for frame in (traffic(100, seed=1, shift=1.0), traffic(100, seed=2, shift=1.0)):
            response = client.post(f"/api/v1/model/{MODEL}/predict", json=frame.to_dict("split"))
            assert response.status_code == 200, response.text
        bad = client.post(f"/api/v1/model/{MODEL}/predict", json={"columns": ["a"], "data": [[1]]})
        assert bad.status_code == 400
        # the server writes tracked events behind; they are in within its flush interval
        body = _eventually(client, MONITOR, lambda b: b["predictions"] == 3)
        assert body["errors"] == 1
        drift = client.get(DRIFT, params={"since": "1h"}).json()
        assert drift["rows"] == 200 and drift["drifted"] is True
        assert [f["name"] for f in drift["features"] if f["drifted"]] == ["a"]
        assert drift["errors"] == 1 and drift["predictions"] == 3
        assert_error(client.get(DRIFT, params={"since": "x"}), 400, "not a time")


def _eventually(client: httpx.Client, path: str, ready, timeout: float = 10.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)

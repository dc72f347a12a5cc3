"""``/metrics``: Prometheus text of requests, latency and predictions per model."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app
from omops.server._metrics import Metrics

from .support import INPUT_SHAPES, PREDICT, X_SPLIT, local_client

_SAMPLE = re.compile(r"^([a-z_]+)(\{.*\})? (\S+)$")


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` for every sample line; checks the format on the way."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")), line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        found[f"{match[1]}{match[2] or ''}"] = float(match[3])
    return found


def test_requests_latency_and_predictions(client: TestClient) -> None:
    for body in INPUT_SHAPES.values():
        assert client.post(PREDICT, json=body).status_code == 200
    assert client.post("/api/v1/model/forecast/predict_proba", json=X_SPLIT).status_code == 200
    assert client.post(PREDICT, json={"columns": ["z"], "data": [[1]]}).status_code == 400
    assert client.get("/api/v1/model/nope").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(response.text)
    route = "/api/v1/model/{name:path}/{action}"
    assert found[f'omops_http_requests_total{{method="POST",route="{route}",status="200"}}'] == 5
    assert found[f'omops_http_requests_total{{method="POST",route="{route}",status="400"}}'] == 1
    describe = 'route="/api/v1/model/{name:path}",status="404"'
    assert found[f'omops_http_requests_total{{method="GET",{describe}}}'] == 1
    assert found['omops_http_requests_total{method="GET",route="unmatched",status="404"}'] == 1
    assert found['omops_predictions_total{bucket="default",model="forecast"}'] == 10  # rows
    count = found[f'omops_http_request_duration_seconds_count{{method="POST",route="{route}"}}']
    assert count == 6
    buckets = [
        value
        for key, value in found.items()
        if key.startswith("omops_http_request_duration_seconds_bucket")
        and f'route="{route}"' in key
    ]
    assert buckets == sorted(buckets) and buckets[-1] == count  # cumulative, +Inf last
    assert found[f'omops_http_request_duration_seconds_sum{{method="POST",route="{route}"}}'] > 0


def test_labels_are_escaped() -> None:
    metrics = Metrics()
    metrics.predicted('we"ird\\name', 3)
    metrics.predicted('we"ird\\name', 2)
    metrics.observe("GET", "/x", 200, 0.003)
    text = metrics.render()
    assert 'omops_predictions_total{model="we\\"ird\\\\name"} 5' in text
    found = samples(text)
    assert (
        found['omops_http_request_duration_seconds_bucket{method="GET",route="/x",le="0.002"}'] == 0
    )
    assert (
        found['omops_http_request_duration_seconds_bucket{method="GET",route="/x",le="0.005"}'] == 1
    )
    assert (
        found['omops_http_request_duration_seconds_bucket{method="GET",route="/x",le="+Inf"}'] == 1
    )


def test_per_model_series_by_bucket_and_who_sees_them() -> None:
    metrics = Metrics()
    metrics.predicted("forecast", 2, bucket="a")
    metrics.predicted("secret", 3, bucket="b")
    metrics.predicted("unlabelled", 1)
    everything = samples(metrics.render())
    assert everything['omops_predictions_total{bucket="a",model="forecast"}'] == 2
    assert everything['omops_predictions_total{bucket="b",model="secret"}'] == 3
    assert everything['omops_predictions_total{model="unlabelled"}'] == 1
    only_a = metrics.render(lambda bucket: bucket == "a")
    assert "forecast" in only_a and "secret" not in only_a and "unlabelled" not in only_a
    gauges = samples(metrics.render(caches={"api_keys": 3, "buckets": 1}))
    assert gauges['omops_server_cache_entries{cache="api_keys"}'] == 3


def test_a_key_of_any_bucket_reads_metrics(store: Omega) -> None:
    token, _ = store.catalog.api_keys.create(role="read", buckets=["elsewhere"])
    with local_client(create_app(store, require_keys=True)) as keyed:
        assert keyed.get("/metrics").status_code == 401
        text = keyed.get("/metrics", headers={"X-API-Key": token}).text
        assert 'omops_server_cache_entries{cache="api_keys"} 1' in text

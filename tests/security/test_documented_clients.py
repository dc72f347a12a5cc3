"""What the README shows still works: JSON with its content type, curl from this machine."""

from __future__ import annotations

import json
import subprocess

import pytest
from server.support import X_SPLIT, Server, wait_for_task

PREDICT = "/api/v1/model/forecast/predict"


def curl(*args: str) -> tuple[int, str]:
    """The real curl: (status, body)."""
    done = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_curl_as_the_readme_shows(keyless: Server) -> None:
    status, body = curl(
        "-X", "POST", f"{keyless.url}{PREDICT}",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({"columns": ["x"], "data": [[1.0], [2.0]]}),
    )  # fmt: skip
    assert status == 200 and json.loads(body)["result"] == [0, 0], body
    status, body = curl(f"{keyless.url}/api/v1/dataset/stats?sales__gte=100&columns=sales,x")
    assert status == 200 and len(json.loads(body)) == 10
    status, body = curl(
        "-X", "POST", f"{keyless.url}/api/v1/model/forecast/fit?datax=stats[x]&datay=stats[y]", "-g"
    )
    assert status == 202, body  # an empty body needs no Content-Type
    status, body = curl("-X", "DELETE", f"{keyless.url}/api/v1/dataset/nothing-here")
    assert status == 404, body
    status, body = curl(f"http://localhost:{keyless.port}/health")
    assert status == 200, body


def test_curl_without_the_content_type_gets_a_clear_415(keyless: Server) -> None:
    status, body = curl("-X", "POST", f"{keyless.url}{PREDICT}", "-d", json.dumps(X_SPLIT))
    assert status == 415
    answer = json.loads(body)
    assert answer["error"] == "unsupported_media_type"
    assert "application/x-www-form-urlencoded" in answer["message"]
    assert "-H 'Content-Type: application/json'" in answer["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.omops+json",
    ],
)
def test_json_content_types(keyless: Server, content_type: str) -> None:
    with keyless.client() as http:
        response = http.post(
            PREDICT, content=json.dumps(X_SPLIT), headers={"Content-Type": content_type}
        )
        assert response.json()["result"] == [0, 1], response.text
        put = http.put(
            "/api/v1/dataset/typed", content=b'[{"a": 1}]', headers={"Content-Type": content_type}
        )
        assert put.status_code == 200, put.text


def test_httpx_json_bodies_and_an_async_fit(keyless: Server) -> None:
    with keyless.client() as http:
        assert http.put(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]
        fitted = http.post(
            "/api/v1/model/forecast/fit",
            json={"data": {"x": [0.0, 1.0, 18.0, 19.0]}, "y": [0, 0, 1, 1]},
        )
        assert fitted.status_code == 202, fitted.text
        assert wait_for_task(http, fitted.headers["location"])["status"] == "SUCCESS"
        created = http.post("/api/v1/auth/key", json={"role": "read", "buckets": ["default"]})
        assert created.status_code == 201, created.text

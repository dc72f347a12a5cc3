"""``create_app`` and ``app_from_environment``: settings, routes, the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import omops
from omops.server import create_app
from omops.server.app import DEFAULT_MAX_BODY, app_from_environment

from .support import PREDICT, X_SPLIT, assert_error, prepare


def test_the_default_instance_is_served() -> None:
    prepare(omops.get_omega())
    with TestClient(create_app()) as client:
        assert client.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]


@pytest.mark.parametrize(
    ("variables", "status"), [({}, 200), ({"OMOPS_SERVER_REQUIRE_KEYS": "1"}, 401)]
)
def test_app_from_environment(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], status: int
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    app = app_from_environment()
    assert app.state.access.require_keys is (status == 401)
    with TestClient(app) as client:
        assert client.get("/api/v1/model").status_code == status


def test_the_body_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(omops.get_omega())
    monkeypatch.setenv("OMOPS_SERVER_MAX_BODY", "20")
    with TestClient(app_from_environment()) as client:
        assert_error(client.post(PREDICT, json=X_SPLIT), 413, "exceeds 20 bytes")
    assert DEFAULT_MAX_BODY == 32 * 1024 * 1024


def test_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "omops"
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key, as a plain header.",
    }
    paths = document["paths"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids)) == 15
    action = paths["/api/v1/model/{name}/{action}"]
    assert set(action) == {"post", "put"}
    headers = [p["name"] for p in action["post"]["parameters"] if p["in"] == "header"]
    assert headers == ["Omops-Bucket"]
    body = action["put"]["requestBody"]["content"]["application/json"]
    assert [s["title"] for s in body["schema"]["oneOf"]] == ["split", "columns", "records"]
    read = paths["/api/v1/dataset/{name}"]["get"]
    query = {p["name"]: p for p in read["parameters"] if p["in"] == "query"}
    assert set(query) == {"columns", "orient", "limit", "offset", "filters"}
    assert query["filters"]["style"] == "form" and query["filters"]["explode"] is True

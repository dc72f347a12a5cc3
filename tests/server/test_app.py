"""``create_app`` and ``app_from_environment``: settings, routes, the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import omops
from omops.errors import ConfigError
from omops.server import create_app
from omops.server.app import DEFAULT_MAX_BODY, ERROR_RESPONSES, app_from_environment

from .support import PREDICT, X_SPLIT, assert_error, local_client, prepare

_SERVER_VARIABLES = (
    "OMOPS_SERVER_REQUIRE_KEYS",
    "OMOPS_SERVER_INSECURE",
    "OMOPS_SERVER_ALLOWED_HOSTS",
    "OMOPS_SERVER_CORS_ORIGINS",
    "OMOPS_SERVER_MAX_BODY",
    "OMOPS_SERVER_ARRAYS",
)


@pytest.fixture(autouse=True)
def _no_server_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SERVER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_instance_is_served() -> None:
    prepare(omops.get_omega())
    with local_client(create_app()) as client:
        assert client.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]


@pytest.mark.parametrize(
    ("variables", "with_key", "status"),
    [
        ({}, False, 200),
        ({}, True, 401),  # the catalog has an active key: it is required
        ({"OMOPS_SERVER_REQUIRE_KEYS": "1"}, False, 401),
        ({"OMOPS_SERVER_REQUIRE_KEYS": "0"}, True, 200),
        ({"OMOPS_SERVER_REQUIRE_KEYS": "true"}, False, 401),
    ],
)
def test_app_from_environment_requires_keys(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], with_key: bool, status: int
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if with_key:
        omops.get_omega().catalog.api_keys.create(role="read", buckets=["default"])
    app = app_from_environment()
    assert app.state.access.require_keys is (status == 401)
    with local_client(app) as client:
        assert client.get("/api/v1/model").status_code == status


def test_app_from_environment_reads_the_guard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMOPS_SERVER_INSECURE", "1")
    monkeypatch.setenv("OMOPS_SERVER_ALLOWED_HOSTS", "models.internal, Other.Example:8000")
    monkeypatch.setenv("OMOPS_SERVER_CORS_ORIGINS", "https://app.example.com/")
    policy = app_from_environment().state.guard
    assert policy.insecure and not policy.require_keys
    assert policy.allowed_hosts == {"models.internal", "other.example"}
    assert policy.cors_origins == {"https://app.example.com"}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("OMOPS_SERVER_REQUIRE_KEYS", "maybe", "not a switch"),
        ("OMOPS_SERVER_INSECURE", "2", "not a switch"),
        ("OMOPS_SERVER_MAX_BODY", "lots", "not a number of bytes"),
        ("OMOPS_SERVER_ALLOWED_HOSTS", "http://x.example/", "not a host name"),
        ("OMOPS_SERVER_CORS_ORIGINS", "*", "wildcard is not accepted"),
    ],
)
def test_bad_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment):
        app_from_environment()


def test_a_keyless_app_answers_loopback_clients_only(monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(omops.get_omega())
    far = {"client": ("192.0.2.9", 40000), "base_url": "http://127.0.0.1"}
    with local_client(create_app(), **far) as client:
        assert_error(client.get("/api/v1/model"), 403, "loopback clients only", "192.0.2.9")
    with TestClient(create_app()) as client:  # Starlette's made-up client 'testclient'
        assert_error(client.get("/health"), 403, "loopback clients only")
    monkeypatch.setenv("OMOPS_SERVER_INSECURE", "1")
    with local_client(app_from_environment(), **far) as client:
        assert client.get("/api/v1/model").status_code == 200
    with local_client(create_app(insecure=True), **far) as client:
        assert client.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]


def test_the_body_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(omops.get_omega())
    monkeypatch.setenv("OMOPS_SERVER_MAX_BODY", "20")
    with local_client(app_from_environment()) as client:
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
    # 15 + /ready + 4 of /api/v1/script(s) + 4 of job(s) + drift and monitor of a model
    # + 4 of stream(s)
    assert len(ids) == len(set(ids)) == 30
    action = paths["/api/v1/model/{name}/{action}"]
    assert set(action) == {"post", "put"}
    headers = [p["name"] for p in action["post"]["parameters"] if p["in"] == "header"]
    assert headers == ["Omops-Bucket", "bucket", "async"]  # omega-ml names bucket and async
    body = action["put"]["requestBody"]["content"]["application/json"]
    assert [s["title"] for s in body["schema"]["oneOf"]] == ["split", "columns", "records"]
    read = paths["/api/v1/dataset/{name}"]["get"]
    query = {p["name"]: p for p in read["parameters"] if p["in"] == "query"}
    assert set(query) == {"columns", "orient", "limit", "offset", "filters"}
    assert query["filters"]["style"] == "form" and query["filters"]["explode"] is True
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}


def test_every_operation_documents_the_error_answers(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error", "message"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    validated = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in (*ERROR_RESPONSES, 422):
                if status == 422 and "422" not in responses:
                    continue
                assert responses[str(status)]["content"] == error, (method, path, status)
                assert responses[str(status)]["description"], (method, path, status)
            validated += "422" in responses
    assert {400, 401, 403, 404, 413, 415, 503} <= set(ERROR_RESPONSES)
    assert validated >= 10  # the operations with parameters or a body
    assert client.get("/openapi.json").json() == document  # the same document every time

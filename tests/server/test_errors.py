"""Every failure is JSON ``{"error": code, "message": text}`` with the right status."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from omops import errors
from omops.omega import Omega
from omops.plugins import BUILTIN, Registry
from omops.server import create_app
from omops.server._errors import ERROR_STATUS, error_response

from .support import PREDICT, X_SPLIT, Broken, assert_error, local_client


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/api/v1/model/nope", {}, 404, "not_found"),
        ("GET", "/api/v1/dataset/a%2F%2Fb", {}, 400, "invalid_name"),
        ("GET", "/api/v1/dataset/stats", {"params": {"x__gt": "ten"}}, 400, "invalid_query"),
        ("POST", PREDICT, {"json": {"columns": ["z"], "data": [[1]]}}, 400, "invalid_data"),
        ("GET", "/api/v1/dataset/stats", {"params": {"limit": "many"}}, 422, "validation_error"),
        ("POST", "/api/v1/auth/key", {"json": {"role": "god"}}, 422, "validation_error"),
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("DELETE", "/api/v1/model", {}, 405, "method_not_allowed"),
        ("POST", "/health", {}, 405, "method_not_allowed"),
    ],
)
def test_error_codes(
    client: TestClient, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    body = assert_error(client.request(method, path, **kwargs), status, code)
    assert body["message"]


def test_a_kind_without_its_plugin_is_a_400(store: Omega) -> None:
    frames_only = Registry({"pandas.dataframe": BUILTIN["pandas.dataframe"]}, ["pandas.dataframe"])
    om = Omega(store.catalog, store.blobs, plugins=frames_only)
    with local_client(create_app(om)) as client:
        assert_error(client.post(PREDICT, json=X_SPLIT), 400, "plugin_error")
        assert_error(client.get("/api/v1/model/forecast"), 400, "plugin_error")


def test_a_bug_is_a_json_500_without_internals(store: Omega) -> None:
    store.models.put(Broken().fit([[0.0], [1.0]], [0, 1]), "broken")
    with local_client(create_app(store), raise_server_exceptions=False) as client:
        response = client.post("/api/v1/model/broken/predict", json=X_SPLIT)
    body = assert_error(response, 500, "internal_error")
    assert "RuntimeError" in body["message"]
    assert "a bug inside the model" not in body["message"]


def test_a_store_at_an_older_schema_is_a_503_naming_the_upgrade(store: Omega) -> None:
    from omops.catalog import _migrate

    _migrate.downgrade(store.catalog.engine(), "0002")  # as an older omops left it
    fresh = Omega(catalog=store.catalog.url, blobs=store.blobs.url)
    with local_client(create_app(fresh)) as client:
        body = assert_error(client.post(PREDICT, json=X_SPLIT), 503, "schema_error")
        assert "`om db upgrade`" in body["message"]
        assert_error(client.get("/api/v1/dataset/stats"), 503, "schema_error")
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "om db upgrade" in ready.json()["checks"]["catalog"]["error"]
    fresh.close()


def test_every_omops_error_has_a_status() -> None:
    leaves = [errors.NotFound, errors.InvalidName, errors.InvalidQuery, errors.InvalidData]
    leaves += [errors.Unauthorized, errors.Forbidden, errors.AlreadyExists, errors.TaskTimeout]
    for cls in leaves:
        status, code = ERROR_STATUS[cls]
        assert 400 <= status < 600 and code.isidentifier()
    assert ERROR_STATUS[errors.Unauthorized][0] == 401
    assert ERROR_STATUS[errors.Forbidden][0] == 403


def test_error_response() -> None:
    response = error_response(418, "teapot", "short and stout", {"Retry-After": "1"})
    assert response.status_code == 418
    assert response.body == b'{"error":"teapot","message":"short and stout"}'
    assert response.headers["retry-after"] == "1"

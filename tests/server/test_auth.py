"""API keys and bucket scoping: in-process details, then the matrix over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import PREDICT, X_SPLIT, Server, assert_error, prepare

WRONG = "omk_000000000000_not-a-secret"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keyed(om: Omega) -> Iterator[TestClient]:
    """A key-requiring app on each catalog backend."""
    with TestClient(create_app(prepare(om), require_keys=True)) as test_client:
        yield test_client


def test_no_key_wrong_key_malformed_key(keyed: TestClient) -> None:
    response = keyed.get("/api/v1/model")
    assert_error(response, 401, "needs an API key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(keyed.get("/api/v1/model", headers=bearer(WRONG)), 401, "unknown API key")
    assert_error(keyed.get("/api/v1/model", headers=bearer("garbage")), 401, "malformed")
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer   "):
        response = keyed.get("/api/v1/model", headers={"Authorization": header})
        assert_error(response, 401, "Authorization: Bearer")


def test_bearer_and_x_api_key_headers(keyed: TestClient, om: Omega) -> None:
    token, _ = om.catalog.api_keys.create(role="read", buckets=["default"])
    assert keyed.get("/api/v1/model", headers=bearer(token)).status_code == 200
    assert keyed.get("/api/v1/model", headers={"X-API-Key": token}).status_code == 200
    assert keyed.post(PREDICT, headers={"X-API-Key": token}, json=X_SPLIT).status_code == 200


def test_open_routes_and_metrics(keyed: TestClient, om: Omega) -> None:
    for path in ("/health", "/openapi.json", "/docs"):
        assert keyed.get(path).status_code == 200, path
    assert_error(keyed.get("/metrics"), 401, "needs an API key")
    token, _ = om.catalog.api_keys.create(role="read", buckets=["default"])
    assert keyed.get("/metrics", headers=bearer(token)).status_code == 200


def test_buckets_and_the_wildcard(keyed: TestClient, om: Omega) -> None:
    prod, _ = om.catalog.api_keys.create(role="write", buckets=["prod", "staging"])
    anywhere, _ = om.catalog.api_keys.create(role="read", buckets=["*"])
    in_prod = {**bearer(prod), "Omops-Bucket": "prod"}
    assert_error(keyed.get("/api/v1/dataset", headers=bearer(prod)), 403, "in bucket 'default'")
    assert keyed.get("/api/v1/dataset", headers=in_prod).json() == {"datasets": []}
    assert keyed.put("/api/v1/dataset/d", headers=in_prod, json=[{"a": 1}]).status_code == 200
    staging = {**bearer(prod), "Omops-Bucket": "staging"}
    assert keyed.delete("/api/v1/dataset/d", headers=staging).status_code == 404
    for bucket in ("default", "prod", "anything"):
        headers = {**bearer(anywhere), "Omops-Bucket": bucket}
        assert keyed.get("/api/v1/dataset", headers=headers).status_code == 200
    headers = {**bearer(anywhere), "Omops-Bucket": "prod"}
    assert_error(keyed.delete("/api/v1/dataset/d", headers=headers), 403, "may not write")


def test_an_admin_manages_keys_within_its_buckets(keyed: TestClient, om: Omega) -> None:
    admin, admin_key = om.catalog.api_keys.create(role="admin", buckets=["prod"])
    _, elsewhere = om.catalog.api_keys.create(role="read", buckets=["dev"])
    headers = {**bearer(admin), "Omops-Bucket": "prod"}
    created = keyed.post(
        "/api/v1/auth/key",
        headers=headers,
        json={"role": "read", "buckets": ["prod"], "note": "ci"},
    )
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["token"].startswith(f"omk_{new['id']}_") and new["note"] == "ci"
    listed = {k["id"] for k in keyed.get("/api/v1/auth/key", headers=headers).json()["keys"]}
    assert listed == {admin_key.id, new["id"]}, "keys of other buckets are not shown"
    for buckets in (["*"], ["dev"], ["prod", "dev"]):
        response = keyed.post(
            "/api/v1/auth/key", headers=headers, json={"role": "admin", "buckets": buckets}
        )
        assert_error(response, 403, "may not create a key")
    assert_error(keyed.delete(f"/api/v1/auth/key/{elsewhere.id}", headers=headers), 404, "manage")
    in_prod = bearer(new["token"]) | {"Omops-Bucket": "prod"}
    assert keyed.get("/api/v1/dataset", headers=in_prod).status_code == 200
    revoked = keyed.delete(f"/api/v1/auth/key/{new['id']}", headers=headers)
    assert revoked.json() == {"revoked": new["id"]}
    response = keyed.get("/api/v1/dataset", headers=in_prod)
    assert_error(response, 401, "revoked")  # at once: this server forgets the cached key


def test_key_requests_are_validated(keyed: TestClient, om: Omega) -> None:
    admin, _ = om.catalog.api_keys.create(role="admin", buckets=["*"])
    for body in (
        {"role": "root", "buckets": ["x"]},
        {"role": "read", "buckets": []},
        {"role": "read", "buckets": ["../x"]},
        {"role": "read"},
        [],
    ):
        assert_error(keyed.post("/api/v1/auth/key", headers=bearer(admin), json=body), 422)
    assert_error(keyed.delete("/api/v1/auth/key/nope", headers=bearer(admin)), 404, "nope")


def test_without_required_keys_anyone_may_do_anything(client: TestClient) -> None:
    assert client.get("/api/v1/auth/key").json() == {"keys": []}
    created = client.post("/api/v1/auth/key", json={"role": "read", "buckets": ["*"]})
    assert created.status_code == 201
    assert client.get("/api/v1/model", headers=bearer("ignored")).status_code == 200
    assert client.delete("/api/v1/dataset/stats").status_code == 200


# -- the matrix, over real HTTP against `om runtime serve --require-keys` ----------------

KEYS = {
    "read": ("read", ["default"]),
    "write": ("write", ["default"]),
    "admin": ("admin", ["default"]),
    "other-bucket": ("admin", ["other"]),
    "revoked": ("read", ["default"]),
}


@pytest.fixture(scope="module")
def keyed_server(served_home, served_store: Omega) -> Iterator[tuple[Server, dict[str, str]]]:
    tokens = {}
    for name, (role, buckets) in KEYS.items():
        tokens[name], key = served_store.catalog.api_keys.create(role=role, buckets=buckets)
        if name == "revoked":
            served_store.catalog.api_keys.revoke(key.id)
    tokens["none"], tokens["wrong"] = "", WRONG
    served_store.datasets.put({"scratch": True}, "scratch")
    with Server(served_home, "--require-keys") as server:
        yield server, tokens


MATRIX = [
    # (key, method, path, body, status)
    ("none", "GET", "/api/v1/model", None, 401),
    ("none", "POST", PREDICT, X_SPLIT, 401),
    ("wrong", "GET", "/api/v1/model", None, 401),
    ("wrong", "POST", PREDICT, X_SPLIT, 401),
    ("revoked", "GET", "/api/v1/dataset/stats", None, 401),
    ("other-bucket", "GET", "/api/v1/model", None, 403),
    ("other-bucket", "POST", PREDICT, X_SPLIT, 403),
    ("other-bucket", "GET", "/api/v1/auth/key", None, 403),
    ("read", "GET", "/api/v1/model", None, 200),
    ("read", "GET", "/api/v1/model/forecast", None, 200),
    ("read", "GET", "/api/v1/dataset/stats?sales__gte=100", None, 200),
    ("read", "POST", PREDICT, X_SPLIT, 200),
    ("read", "PUT", PREDICT, X_SPLIT, 200),
    ("read", "POST", PREDICT + "?async=true", X_SPLIT, 202),
    ("read", "GET", "/metrics", None, 200),
    ("read", "PUT", "/api/v1/dataset/stats", [{"x": 1.0}], 403),
    ("read", "DELETE", "/api/v1/dataset/scratch", None, 403),
    ("read", "POST", "/api/v1/model/forecast/fit?datax=stats[x]&datay=stats[y]", None, 403),
    ("read", "POST", "/api/v1/model/forecast/partial_fit?datax=stats[x]", None, 403),
    ("read", "GET", "/api/v1/auth/key", None, 403),
    ("read", "POST", "/api/v1/auth/key", {"role": "admin", "buckets": ["*"]}, 403),
    ("write", "POST", "/api/v1/model/forecast/fit?datax=stats[x]&datay=stats[y]", None, 202),
    ("write", "PUT", "/api/v1/dataset/written", [{"a": 1}], 200),
    ("write", "POST", PREDICT, X_SPLIT, 200),
    ("write", "GET", "/api/v1/auth/key", None, 403),
    ("admin", "GET", "/api/v1/auth/key", None, 200),
    ("admin", "POST", "/api/v1/auth/key", {"role": "read", "buckets": ["default"]}, 201),
    ("admin", "DELETE", "/api/v1/dataset/scratch", None, 200),
    ("none", "GET", "/health", None, 200),
    ("none", "GET", "/openapi.json", None, 200),
]


@pytest.mark.parametrize(("key", "method", "path", "body", "status"), MATRIX)
def test_auth_matrix_over_http(
    keyed_server: tuple[Server, dict[str, str]],
    key: str,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    server, tokens = keyed_server
    headers = bearer(tokens[key]) if tokens[key] else {}
    with server.client(**headers) as http:
        response = http.request(method, path, json=body)
    if status >= 400:
        assert_error(response, status)
    assert response.status_code == status, response.text


def test_other_bucket_key_in_its_bucket_over_http(
    keyed_server: tuple[Server, dict[str, str]], served_store: Omega
) -> None:
    server, tokens = keyed_server
    served_store["other"].datasets.put({"ok": 1}, "there")
    with server.client(**bearer(tokens["other-bucket"]), **{"Omops-Bucket": "other"}) as http:
        assert http.get("/api/v1/dataset/there").json()["data"] == {"ok": 1}
        assert http.get("/api/v1/auth/key").status_code == 200

"""``_guard``: the checks before any route, in-process (tests/security replays them over HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from omops.errors import ConfigError
from omops.omega import Omega
from omops.server import create_app
from omops.server._guard import (
    BINARY_MEDIA_TYPES,
    accepts_media_type,
    check_cors_origins,
    check_host_names,
    host_name,
    is_loopback,
)

from .support import PREDICT, X_SPLIT, assert_error, local_client


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost.", False),
        ("localhost.example", False),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("localhost:8000", "localhost"),
        ("Example.COM", "example.com"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("host:notaport", "host:notaport"),
    ],
)
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("APPLICATION/JSON", True),
        ("application/problem+json", True),
        (BINARY_MEDIA_TYPES[0], True),
        (BINARY_MEDIA_TYPES[1] + "; x=1", True),
        ("text/plain", False),
        ("text/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=a", False),
        ("application/jsonp", False),
        ("application/octet-stream", False),
        ("", False),
    ],
)
def test_accepts_media_type(content_type: str, accepted: bool) -> None:
    assert accepts_media_type(content_type) is accepted


def test_configured_names_and_origins_are_checked() -> None:
    assert check_host_names(["Models.Internal", "10.0.0.5:8000", "[fd00::2]", " "]) == {
        "models.internal",
        "10.0.0.5",
        "fd00::2",
    }
    for bad in ("http://models.internal", "a/b", "a b", "*"):
        with pytest.raises(ConfigError, match="not a host name"):
            check_host_names([bad])
    assert check_cors_origins(["https://App.example.com/", "http://localhost:3000"]) == {
        "https://app.example.com",
        "http://localhost:3000",
    }
    for bad in ("*", "null", "app.example.com", "ftp://x", "https://x/path"):
        with pytest.raises(ConfigError, match="is not an origin"):
            check_cors_origins([bad])


def test_bad_settings_stop_create_app(store: Omega) -> None:
    with pytest.raises(ConfigError, match="wildcard"):
        create_app(store, cors_origins=["*"])


def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, Any]:
    """One raw ASGI request whose body arrives in ``chunks``: (status, JSON body)."""
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "2", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(body)


@pytest.mark.parametrize("path", [PREDICT, "/api/v1/dataset/hidden", "/api/v1/auth/key"])
def test_a_body_without_type_or_length_is_415_when_it_arrives(store: Omega, path: str) -> None:
    """HTTP/2 needs no Content-Length: the body is refused when it turns up."""
    app = create_app(store)
    method = "PUT" if "dataset" in path else "POST"
    status, body = call(
        app, method, path, [], [orjson.dumps(X_SPLIT)[:10], orjson.dumps(X_SPLIT)[10:]]
    )
    assert (status, body["error"]) == (415, "unsupported_media_type"), body
    assert "no Content-Type" in body["message"]
    assert not store.datasets.exists("hidden")
    status, body = call(
        app, "POST", PREDICT, [(b"content-type", b"application/json")], [orjson.dumps(X_SPLIT)]
    )
    assert status == 200 and body["result"] == [0, 1]


def test_an_empty_request_needs_no_type(client: TestClient) -> None:
    fit = client.post(
        "/api/v1/model/forecast/fit", params={"datax": "stats[x]", "datay": "stats[y]"}
    )
    assert fit.status_code == 202, fit.text
    assert client.delete("/api/v1/dataset/stats").status_code == 200
    assert_error(client.post(PREDICT), 400, "predict needs input data")


def test_safe_methods_are_not_checked_for_type_or_origin(client: TestClient) -> None:
    headers = {"Content-Type": "text/plain", "Origin": "https://attacker.example"}
    assert client.get("/api/v1/dataset/stats", headers=headers).status_code == 200
    assert client.head("/health", headers=headers).status_code == 405  # the router's answer
    assert_error(client.options(PREDICT, headers=headers), 405)


def test_with_keys_any_client_and_host_may_ask(store: Omega) -> None:
    token, _ = store.catalog.api_keys.create(role="read", buckets=["default"])
    app = create_app(store, require_keys=True)
    with TestClient(app, base_url="http://models.example.com", client=("192.0.2.9", 1)) as far:
        answer = far.post(PREDICT, json=X_SPLIT, headers={"X-API-Key": token})
        assert answer.json()["result"] == [0, 1]
        own = far.post(
            PREDICT,
            json=X_SPLIT,
            headers={"X-API-Key": token, "Origin": "http://models.example.com"},
        )
        assert own.status_code == 200
        foreign = far.post(
            PREDICT,
            json=X_SPLIT,
            headers={"X-API-Key": token, "Origin": "https://attacker.example"},
        )
        assert_error(foreign, 403, "Origin")
    configured = create_app(store, require_keys=True, allowed_hosts=["models.example.com"])
    with TestClient(configured, base_url="http://other.example.com") as elsewhere:
        assert_error(elsewhere.get("/health"), 421, "models.example.com")


def test_guard_refusals_are_counted(client: TestClient) -> None:
    assert (
        client.post(PREDICT, content=b"{}", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    text = client.get("/metrics").text
    assert 'omops_http_requests_total{method="POST",route="unmatched",status="415"} 1' in text


def test_an_unknown_client_is_refused_without_keys(store: Omega) -> None:
    app = create_app(store)
    with local_client(app) as client:
        assert client.get("/health").status_code == 200

    async def no_client() -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/health", "raw_path": b"/health", "root_path": "",
            "query_string": b"", "headers": [(b"host", b"localhost")], "client": None,
        }  # fmt: skip
        await app(scope, receive, send)
        assert sent[0]["status"] == 403
        assert b"client address is unknown" in sent[1]["body"]

    asyncio.run(no_client())

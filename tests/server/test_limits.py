"""Bodies over ``max_body`` get a JSON 413, announced or streamed, on every route."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import PREDICT, X_SPLIT, assert_error, local_client

LIMIT = 1000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def limited(store: Omega) -> Iterator[TestClient]:
    with local_client(create_app(store, max_body=LIMIT)) as client:
        yield client


def big_body() -> bytes:
    body = orjson.dumps({"columns": ["x"], "data": [[float(i)] for i in range(LIMIT)]})
    assert len(body) > LIMIT
    return body


def chunks(body: bytes) -> Iterator[bytes]:
    """A body without Content-Length: sent chunked, so only counting can stop it."""
    for start in range(0, len(body), 100):
        yield body[start : start + 100]


def test_under_the_limit_passes(limited: TestClient) -> None:
    assert limited.post(PREDICT, json=X_SPLIT).status_code == 200
    exact = orjson.dumps({"data": {"x": [1.0] * 10}})
    assert (
        limited.post(PREDICT, content=b" " * (LIMIT - len(exact)) + exact, headers=JSON).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", PREDICT),
        ("PUT", "/api/v1/dataset/big"),
        ("POST", "/api/v1/model/forecast/fit"),
        ("POST", "/api/v1/auth/key"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_over_the_limit_is_a_413(
    limited: TestClient, store: Omega, method: str, path: str, streamed: bool
) -> None:
    body = big_body()
    content = chunks(body) if streamed else body
    response = limited.request(method, path, content=content, headers=JSON)
    assert_error(response, 413, "payload_too_large", f"exceeds {LIMIT} bytes")
    assert not store.datasets.exists("big")


def test_the_default_limit_is_generous(client: TestClient) -> None:
    body = orjson.dumps({"columns": ["x"], "data": [[float(i)] for i in range(50_000)]})
    response = client.post(PREDICT, content=body, headers=JSON)
    assert response.status_code == 200 and response.json()["rows"] == 50_000

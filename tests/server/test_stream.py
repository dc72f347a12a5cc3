"""``/api/v1/stream``: append over REST, read from an offset on; roles and buckets."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import Server, assert_error


def test_append_and_read_from_an_offset(client: TestClient, store: Omega) -> None:
    first = client.post("/api/v1/stream/readings", json={"sensor": 1, "v": 0.3})
    assert first.status_code == 200, first.text
    assert first.json() == {"stream": "readings", "first": 0, "count": 1, "next": 1}
    more = client.post("/api/v1/stream/readings", json=[{"sensor": 2, "v": None}, [1, "x"]])
    assert more.json() == {"stream": "readings", "first": 1, "count": 2, "next": 3}
    store.streams.put({"sensor": 3}, "readings")  # from Python: the same stream

    page = client.get("/api/v1/stream/readings", params={"since": 1, "limit": 2}).json()
    assert {k: page[k] for k in ("stream", "since", "next", "end")} == {
        "stream": "readings",
        "since": 1,
        "next": 3,
        "end": 4,
    }
    assert [(r["offset"], r["record"]) for r in page["records"]] == [
        (1, {"sensor": 2, "v": None}),
        (2, [1, "x"]),
    ]
    assert all(isinstance(r["appended"], float) for r in page["records"])
    rest = client.get("/api/v1/stream/readings", params={"since": page["next"]}).json()
    assert [r["record"] for r in rest["records"]] == [{"sensor": 3}] and rest["next"] == 4
    empty = client.get("/api/v1/stream/readings", params={"since": 4}).json()
    assert (empty["records"], empty["next"]) == ([], 4)

    listed = client.get("/api/v1/stream").json()["streams"]
    assert [(s["name"], s["records"]) for s in listed] == [("readings", 4)]
    assert client.delete("/api/v1/stream/readings").json() == {"dropped": "readings"}
    assert_error(client.get("/api/v1/stream/readings"), 404, "does not exist")


def test_bad_requests_are_4xx_and_append_nothing(client: TestClient, store: Omega) -> None:
    store.streams.put([], "s")
    assert_error(
        client.post(
            "/api/v1/stream/s", content=b"{nope", headers={"content-type": "application/json"}
        ),
        400,
        "not valid JSON",
    )
    assert_error(
        client.post("/api/v1/stream/s", content=b"", headers={"content-type": "application/json"}),
        400,
        "no body",
    )
    deep = "[" * 300 + "]" * 300
    assert_error(
        client.post("/api/v1/stream/s", content=deep, headers={"content-type": "application/json"}),
        400,
        "must be JSON",
    )
    assert_error(
        client.post("/api/v1/stream/s", content=b"a=1", headers={"content-type": "text/plain"}), 415
    )
    assert_error(client.post("/api/v1/stream/bad%20name", json={"a": 1}), 400, "invalid name")
    assert_error(client.get("/api/v1/stream/s", params={"since": -1}), 422)
    assert_error(client.get("/api/v1/stream/s", params={"limit": 10_001}), 422)
    assert_error(client.get("/api/v1/stream/missing"), 404, "om.streams.put")
    assert store.streams.metadata("s").next_offset == 0


def test_roles_and_buckets(om: Omega) -> None:
    write, _ = om.catalog.api_keys.create(role="write", buckets=["prod"])
    read, _ = om.catalog.api_keys.create(role="read", buckets=["prod"])
    prod = {"Omops-Bucket": "prod"}
    with TestClient(create_app(om, require_keys=True)) as keyed:
        assert_error(keyed.post("/api/v1/stream/s", json={"a": 1}), 401)
        writer = {**prod, "Authorization": f"Bearer {write}"}
        reader = {**prod, "Authorization": f"Bearer {read}"}
        assert keyed.post("/api/v1/stream/s", json={"a": 1}, headers=writer).status_code == 200
        assert_error(
            keyed.post("/api/v1/stream/s", json={"a": 2}, headers=reader), 403, "may not write"
        )
        assert_error(
            keyed.get("/api/v1/stream/s", headers={"Authorization": f"Bearer {read}"}), 403
        )
        got = keyed.get("/api/v1/stream/s", headers=reader).json()
        assert [r["record"] for r in got["records"]] == [{"a": 1}]
    assert om["prod"].streams.get("s")["a"].tolist() == [1] and om.streams.list() == []


@pytest.fixture
def http(served: Server) -> httpx.Client:
    with served.client() as client:
        yield client


def test_over_http_a_python_consumer_sees_rest_producers(
    http: httpx.Client, served_store: Omega
) -> None:
    for i in range(5):
        assert (
            http.post("/api/v1/stream/events", json=[{"i": 2 * i}, {"i": 2 * i + 1}]).status_code
            == 200
        )
    windows = served_store.streams.getl("events", group="py", size=4, timeout=0)
    assert [w["i"].tolist() for w in windows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    page = http.get("/api/v1/stream/events", params={"since": 8}).json()
    assert [r["record"]["i"] for r in page["records"]] == [8, 9]
    assert "/api/v1/stream/{name}" in http.get("/openapi.json").json()["paths"]

"""Cross-site requests: a web page the user visits must not drive the keyless server.

A page may send "simple" requests without asking the server first: GET, and
POST with ``text/plain``, a form or no body, from the user's browser to
http://127.0.0.1:8000. Such a POST to ``/fit`` used to retrain the model (202,
new revision tagged latest). Now a body must be JSON (415 otherwise) and a
write from a foreign ``Origin`` is refused (403), before anything runs.
"""

from __future__ import annotations

import httpx
import pytest
from server.support import X_SPLIT, Server, assert_error

from omops.omega import Omega

FIT = "/api/v1/model/forecast/fit"
FIT_FROM_DATASETS = {"datax": "stats[x]", "datay": "stats[y]"}
PAGE = "https://attacker.example"


def revision(server: Server) -> str:
    om = Omega(home=str(server.home))
    try:
        return om.models.metadata("forecast").revision
    finally:
        om.catalog.close()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
    ],
)
def test_a_body_a_page_may_send_is_415_and_fits_nothing(keyless: Server, content_type: str) -> None:
    before = revision(keyless)
    body = b'{"columns": ["x"], "data": [[1.0], [18.0]], "y": [1, 0]}'
    with keyless.client() as http:
        response = http.post(FIT, content=body, headers={"Content-Type": content_type})
        assert_error(response, 415, "unsupported_media_type", "application/json")
        response = http.put(
            "/api/v1/dataset/planted", content=b"[{}]", headers={"Content-Type": content_type}
        )
        assert_error(response, 415, "unsupported_media_type")
    assert revision(keyless) == before


def test_a_body_without_content_type_is_415(keyless: Server) -> None:
    with keyless.client() as http:
        response = http.post(FIT, content=b'{"data": {"x": [1.0]}, "y": [1]}')
        assert "content-type" not in response.request.headers
        assert_error(response, 415, "no Content-Type", "curl: -H 'Content-Type: application/json'")

        def chunks():
            yield b'{"data": {"x": [1.0]}, '
            yield b'"y": [1]}'

        assert_error(http.post(FIT, content=chunks()), 415, "no Content-Type")


@pytest.mark.parametrize("origin", [PAGE, "http://127.0.0.1.attacker.example:8000", "null"])
def test_a_write_from_a_foreign_origin_is_403(keyless: Server, origin: str) -> None:
    before = revision(keyless)
    with keyless.client(Origin=origin) as http:
        # the empty-bodied simple POST: no Content-Type to refuse, only the Origin
        response = http.post(FIT, params=FIT_FROM_DATASETS)
        assert_error(response, 403, "forbidden", f"Origin {origin!r}", "--cors-origin")
        assert_error(http.post(FIT, params=FIT_FROM_DATASETS, json=X_SPLIT), 403, "forbidden")
        assert_error(http.delete("/api/v1/dataset/stats"), 403, "forbidden")
        # reading is left to the browser, which keeps the answer from the page: no CORS headers
        read = http.get("/api/v1/dataset/stats", params={"limit": "1"})
        assert read.status_code == 200
        assert not [h for h in read.headers if h.startswith("access-control-")]
    assert revision(keyless) == before


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:8000", "http://localhost:3000", "http://[::1]:9", "https://127.0.0.2"],
)
def test_a_write_from_a_loopback_origin_passes(keyless: Server, origin: str) -> None:
    with keyless.client(Origin=origin) as http:
        assert http.post("/api/v1/model/forecast/predict", json=X_SPLIT).status_code == 200


def test_the_servers_own_docs_page_may_write(keyless: Server) -> None:
    own = keyless.url  # /docs "Try it out" sends the page's own origin
    with keyless.client(Origin=own) as http:
        assert http.post("/api/v1/model/forecast/predict", json=X_SPLIT).status_code == 200


def test_no_cors_unless_configured(keyless: Server) -> None:
    preflight = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = httpx.options(
        f"{keyless.url}/api/v1/model/forecast/predict", headers=preflight, timeout=60
    )
    assert response.status_code == 405, response.text
    assert not [h for h in response.headers if h.startswith("access-control-")]


def test_a_configured_cors_origin_may_call_from_the_browser(home) -> None:
    app = "https://app.example.com"
    with Server(home, "--cors-origin", app, "--cors-origin", "http://localhost:5173") as server:
        preflight = {
            "Origin": app,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,omops-bucket",
        }
        url = f"{server.url}/api/v1/model/forecast/predict"
        answer = httpx.options(url, headers=preflight, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == app
        assert "POST" in answer.headers["access-control-allow-methods"]
        predicted = httpx.post(url, json=X_SPLIT, headers={"Origin": app}, timeout=60)
        assert predicted.json()["result"] == [0, 1]
        assert predicted.headers["access-control-allow-origin"] == app
        other = httpx.post(url, json=X_SPLIT, headers={"Origin": PAGE}, timeout=60)
        assert_error(other, 403, "forbidden")
        refused = httpx.options(url, headers={**preflight, "Origin": PAGE}, timeout=60)
        assert "access-control-allow-origin" not in refused.headers

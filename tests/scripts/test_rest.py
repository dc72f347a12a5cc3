"""REST: run scripts with POST (and the seed's GET form), list and describe them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from server.support import Server, assert_error, local_client, wait_for_task

from omops.omega import Omega
from omops.server import create_app

from .support import ECHO, make_package


@pytest.fixture
def client(om: Omega, wheels) -> Iterator[TestClient]:
    om.scripts.put(wheels["echo"], "echo", tag="v1")
    om.scripts.put(wheels["raises"], "raises")
    with local_client(create_app(om)) as test_client:
        yield test_client


def test_post_runs_async_and_the_task_has_the_record(client: TestClient):
    response = client.post("/api/v1/script/echo/run", json={"n": 3, "region": "EU"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "PENDING" and response.headers["location"] == body["location"]
    assert body["location"] == f"/api/v1/task/{body['task']}/result"
    done = wait_for_task(client, body["location"], timeout=120)
    assert done["status"] == "SUCCESS" and done["error"] is None
    record = done["result"]
    assert record["script"] == "echo" and record["args"] == {"n": 3, "region": "EU"}
    assert record["result"]["kwargs"] == {"n": 3, "region": "EU"}
    assert {"started", "ended", "duration", "output"} <= set(record)


def test_async_false_waits_and_answers_the_record(client: TestClient):
    response = client.post("/api/v1/script/echo@v1/run?async=false", json={"n": 1})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["kwargs"] == {"n": 1}
    empty = client.post("/api/v1/script/echo/run?async=false")  # no body: no arguments
    assert empty.status_code == 200 and empty.json()["args"] == {}


def test_a_failing_script(client: TestClient):
    waited = client.post("/api/v1/script/raises/run?async=false", json={"n": -1})
    assert_error(waited, 400, "task_failed", "ValueError: n must be positive, got -1")

    started = client.post("/api/v1/script/raises/run", json={"n": -1})
    done = wait_for_task(client, started.json()["location"], timeout=120)
    assert done["status"] == "FAILURE"
    assert done["error"] == {"type": "ValueError", "message": "n must be positive, got -1"}


def test_bad_requests_are_4xx_json(client: TestClient):
    assert_error(client.post("/api/v1/script/nope/run", json={}), 404, "not_found", "nope")
    assert_error(client.post("/api/v1/script/echo/run", json=[1, 2]), 400, "JSON object")
    assert_error(
        client.post(
            "/api/v1/script/echo/run",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
        "not JSON",
    )
    assert_error(client.post("/api/v1/script/echo/run?async=maybe", json={}), 400, "async")
    assert_error(client.get("/api/v1/script/echo/run"), 405, "POST")
    assert_error(client.get("/api/v1/scripts/echo/run?n=1&n=2"), 400, "twice")


def test_list_and_describe(client: TestClient, om: Omega):
    listed = client.get("/api/v1/script").json()["scripts"]
    assert [(s["name"], s["kind"]) for s in listed] == [
        ("echo", "python.package"),
        ("raises", "python.package"),
    ]
    described = client.get("/api/v1/script/echo").json()
    assert described["package"] == "script-echo" and described["version"] == "0.1"
    assert described["sha256"] == om.scripts.get("echo").sha256
    assert described["revisions"] == [
        {"revision": om.scripts.metadata("echo").revision, "tags": ["latest", "v1"]}
    ]
    assert_error(client.get("/api/v1/script/nope"), 404, "not_found")


def test_the_seeds_get_form_takes_the_query_as_arguments(client: TestClient):
    response = client.get("/api/v1/scripts/echo/run?n=3&region=EU&flag=true&async=false")
    assert response.status_code == 200, response.text
    assert response.json()["args"] == {"n": 3, "region": "EU", "flag": True}

    started = client.get("/api/v1/scripts/echo/run", params={"n": "[1, 2]"})
    assert started.status_code == 202
    assert wait_for_task(client, started.json()["location"])["result"]["args"] == {"n": [1, 2]}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page.html"},
        {"Referer": "http://127.0.0.1.evil.example/"},
    ],
    ids=["cross-site", "same-site", "origin", "null-origin", "referer", "lookalike-referer"],
)
def test_the_get_form_refuses_other_web_sites(client: TestClient, om: Omega, headers):
    response = client.get("/api/v1/scripts/echo/run?async=false", headers=headers)
    assert_error(response, 403, "forbidden", "another web site")
    assert not (Path(om.settings.home) / "envs").exists()  # nothing ran


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Origin": "http://127.0.0.1"},
        {"Referer": "http://localhost:8000/docs"},
    ],
    ids=["same-origin", "none", "loopback-origin", "own-referer"],
)
def test_the_get_form_answers_the_servers_own_pages(client: TestClient, headers):
    response = client.get("/api/v1/scripts/echo/run?async=false", headers=headers)
    assert response.status_code == 200, response.text


def test_running_needs_the_write_role(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    reader, _ = om.catalog.api_keys.create(role="read", buckets=["default"])
    writer, _ = om.catalog.api_keys.create(role="write", buckets=["default"])
    with local_client(create_app(om, require_keys=True)) as client:
        as_reader = {"Authorization": f"Bearer {reader}"}
        as_writer = {"Authorization": f"Bearer {writer}"}
        assert client.get("/api/v1/script/echo", headers=as_reader).status_code == 200
        assert_error(client.post("/api/v1/script/echo/run", json={}, headers=as_reader), 403)
        assert_error(client.get("/api/v1/scripts/echo/run", headers=as_reader), 403)
        assert_error(client.post("/api/v1/script/echo/run", json={}), 401)
        done = client.post("/api/v1/script/echo/run?async=false", json={"n": 1}, headers=as_writer)
        assert done.status_code == 200 and done.json()["args"] == {"n": 1}


def test_the_openapi_document_lists_the_routes(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/script", "/api/v1/script/{name}", "/api/v1/script/{name}/run"} <= set(paths)
    assert "get" in paths["/api/v1/scripts/{name}/run"]


def test_a_real_server_runs_a_script_built_from_a_setup_py(tmp_path: Path):
    home = tmp_path / "home"
    store = Omega(home=str(home))
    folder = make_package(tmp_path, "served-script", ECHO, layout="setup.py")
    store.scripts.put(str(folder / "setup.py"), "myscript")
    store.close()
    with Server(home) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        started = http.post("/api/v1/script/myscript/run", json={"n": 3})
        assert started.status_code == 202, started.text
        done = wait_for_task(http, started.headers["location"], timeout=120)
        seed = http.get("/api/v1/scripts/myscript/run", params={"n": 4, "async": "false"})
        refused = http.get("/api/v1/scripts/myscript/run", headers={"Sec-Fetch-Site": "cross-site"})
    assert done["status"] == "SUCCESS", (done, server.output())
    assert done["result"]["result"]["kwargs"] == {"n": 3}
    assert seed.status_code == 200 and seed.json()["result"]["kwargs"] == {"n": 4}
    assert seed.json()["env"]["created"] is False
    assert refused.status_code == 403

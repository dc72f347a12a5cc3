"""``/api/v1/job`` and the seed's ``/api/v1/jobs/{name}/run``: in-process and over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from server.support import Server, assert_error, local_client, wait_for_task

from omops.omega import Omega
from omops.server import create_app

TASK_TIMEOUT = 120.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Omega]:
    om = Omega(home=str(tmp_path / "home"))
    om.jobs.create("print('n is', n, job)", "mynb", parameters={"n": 1})
    om.jobs.create("1 / 0", "bad")
    yield om
    om.close()


@pytest.fixture
def client(store: Omega) -> Iterator[TestClient]:
    with local_client(create_app(store)) as test_client:
        yield test_client


def _started(response: Any) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "PENDING"
    assert response.headers["location"] == body["location"] == f"/api/v1/task/{body['task']}/result"
    return body["location"]


def test_post_run_is_async_by_default(client: TestClient, store: Omega) -> None:
    location = _started(client.post("/api/v1/job/mynb/run", json={"n": 7}))
    done = wait_for_task(client, location, timeout=TASK_TIMEOUT)
    assert done["status"] == "SUCCESS" and done["error"] is None
    record = done["result"]
    assert record["job"] == "mynb" and record["parameters"] == {"n": 7}
    assert record["status"] == "ok" and record["task"] == done["id"]
    assert store.jobs.results("mynb")[0]["result"] == record["result"]


def test_post_run_waits_with_async_false(client: TestClient) -> None:
    response = client.post("/api/v1/job/mynb/run", params={"async": "false"}, json={"n": 2})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"n": 2}
    empty = client.post("/api/v1/job/mynb/run", params={"async": "false"})  # no body
    assert empty.status_code == 200 and empty.json()["parameters"] == {}


def test_a_failing_run_says_which_cell(client: TestClient) -> None:
    sync = client.post("/api/v1/job/bad/run", params={"async": "false"})
    assert_error(sync, 400, "task_failed", "failed in cell 1", "ZeroDivisionError", "results/bad_")
    done = wait_for_task(client, _started(client.post("/api/v1/job/bad/run")), timeout=TASK_TIMEOUT)
    assert done["status"] == "FAILURE"
    assert done["error"]["type"] == "ZeroDivisionError"
    assert "failed in cell 1" in done["error"]["message"]


def test_the_seeds_get_form_takes_the_query_string(client: TestClient) -> None:
    response = client.get("/api/v1/jobs/mynb/run", params={"n": "3", "region": "eu", "async": "0"})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"n": 3, "region": "eu"}  # JSON where it parses
    done = wait_for_task(
        client, _started(client.get("/api/v1/jobs/mynb/run")), timeout=TASK_TIMEOUT
    )
    assert done["status"] == "SUCCESS"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:3000"},  # another local web app
        {"Origin": "null"},
        {"Referer": "https://evil.example/page.html"},
    ],
    ids=["cross-site", "same-site", "foreign-origin", "other-port", "null-origin", "referer"],
)
def test_the_get_form_refuses_other_sites_pages(
    client: TestClient, store: Omega, headers: dict[str, str]
) -> None:
    # What an <img src="http://127.0.0.1:8000/api/v1/jobs/mynb/run"> on another site sends
    # (with ?async=false a run that was not refused would have finished before the answer).
    refused = client.get("/api/v1/jobs/mynb/run", params={"async": "false"}, headers=headers)
    assert_error(refused, 403, "forbidden", "POST")
    assert store.jobs.results("mynb") == []  # nothing ran


def test_the_get_form_answers_this_servers_own_pages_and_scripts(client: TestClient) -> None:
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Referer": "http://127.0.0.1/docs"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {},  # curl, scripts
    ):
        response = client.get("/api/v1/jobs/mynb/run", params={"async": "false"}, headers=headers)
        assert response.status_code == 200, (headers, response.text)


def test_list_and_describe(client: TestClient, store: Omega) -> None:
    store.jobs.schedule("mynb", "daily at 06:00")
    client.post("/api/v1/job/mynb/run", params={"async": "false"}, json={"n": 4})
    listed = client.get("/api/v1/job").json()["jobs"]
    assert [(j["name"], j["schedule"]) for j in listed] == [
        ("bad", None),
        ("mynb", "daily at 06:00"),
    ]
    with_results = client.get("/api/v1/job", params={"results": "true"}).json()["jobs"]
    assert len(with_results) == 3 and with_results[2]["name"].startswith("results/mynb_")
    described = client.get("/api/v1/job/mynb").json()
    assert described["kind"] == "notebook.ipynb" and described["cells"] == 2
    assert described["schedule"]["cron"] == "0 6 * * *"
    assert described["runs_total"] == 1
    [run] = described["runs"]
    assert run["status"] == "ok" and run["parameters"] == {"n": 4}
    result = client.get(f"/api/v1/job/{run['result']}").json()
    assert result["attributes"]["status"] == "ok"


def test_errors_are_json(client: TestClient) -> None:
    assert_error(client.post("/api/v1/job/missing/run"), 404, "not_found", "does not exist")
    assert_error(client.get("/api/v1/jobs/missing/run"), 404, "not_found")
    assert_error(client.post("/api/v1/job/mynb/run", json=[1, 2]), 400, "JSON object")
    assert_error(client.post("/api/v1/job/mynb/run", params={"async": "maybe"}), 400, "async")
    assert_error(client.post("/api/v1/job/mynb/run", params={"timeout": "-1"}), 400, "timeout")
    assert_error(client.post("/api/v1/job/x;y/run"), 400, "invalid_name")
    assert_error(client.get("/api/v1/job/mynb/run"), 405, "POST")
    assert_error(
        client.post("/api/v1/job/mynb/run", content=b"n=1", headers={"Content-Type": "text/plain"}),
        415,
    )


def test_running_needs_the_write_role(store: Omega) -> None:
    read, _ = store.catalog.api_keys.create(role="read", buckets=["*"])
    write, _ = store.catalog.api_keys.create(role="write", buckets=["default"])
    with local_client(create_app(store, require_keys=True)) as client:
        assert_error(client.post("/api/v1/job/mynb/run"), 401)
        for path, method in (("/api/v1/job/mynb/run", "POST"), ("/api/v1/jobs/mynb/run", "GET")):
            refused = client.request(method, path, headers={"Authorization": f"Bearer {read}"})
            assert_error(refused, 403, "forbidden")
        assert client.get("/api/v1/job", headers={"Authorization": f"Bearer {read}"}).is_success
        allowed = client.post("/api/v1/job/mynb/run", headers={"X-API-Key": write})
        location = _started(allowed)
        done = wait_for_task(_Authorized(client, write), location, timeout=TASK_TIMEOUT)
        assert done["status"] == "SUCCESS"
        other = client.post(
            "/api/v1/job/mynb/run", headers={"X-API-Key": write, "Omops-Bucket": "other"}
        )
        assert_error(other, 403)


class _Authorized:
    """A client that sends a key with every GET (for wait_for_task)."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.key = client, key

    def get(self, url: str) -> Any:
        return self.client.get(url, headers={"X-API-Key": self.key})


def test_a_real_server_runs_a_job_for_curl(tmp_path: Path) -> None:
    home = tmp_path / "home"
    om = Omega(home=str(home))
    om.jobs.create("print('hello', job)", "mynb")
    om.close()
    with Server(home) as server, httpx.Client(base_url=server.url, timeout=60.0) as http:
        response = http.get("/api/v1/jobs/mynb/run", params={"who": "curl"})
        location = _started(response)
        done = wait_for_task(http, location, timeout=TASK_TIMEOUT)
        assert done["status"] == "SUCCESS", done
        assert done["result"]["parameters"] == {"who": "curl"}
        waited = http.post("/api/v1/job/mynb/run?async=false", json={"who": "post"})
        assert waited.status_code == 200 and waited.json()["status"] == "ok"
        refused = http.get("/api/v1/jobs/mynb/run", headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403
    reader = Omega(home=str(home))
    try:
        assert [r["parameters"] for r in reader.jobs.results("mynb")] == [
            {"who": "curl"},
            {"who": "post"},
        ]
    finally:
        reader.close()

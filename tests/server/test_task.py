"""``/api/v1/task``: status and result of tasks started through the API."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from omops.omega import Omega

from .support import PREDICT, X_SPLIT, SlowFit, assert_error, wait_for_task


def _start(client: TestClient, path: str, **kwargs: object) -> str:
    response = client.post(path, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()["task"]


def test_status_and_result_of_a_finished_task(client: TestClient) -> None:
    task = _start(client, PREDICT, params={"async": "true"}, json=X_SPLIT)
    result = wait_for_task(client, f"/api/v1/task/{task}/result")
    assert result == {"id": task, "status": "SUCCESS", "result": [0, 1], "error": None}
    status = client.get(f"/api/v1/task/{task}/status").json()
    assert status["id"] == task and status["status"] == "SUCCESS"
    assert status["task"] == "omops.model"
    created = dt.datetime.fromisoformat(status["created"])
    assert created <= dt.datetime.fromisoformat(status["finished"])


def test_a_running_task_answers_202(client: TestClient, store: Omega) -> None:
    store.models.put(SlowFit(delay=1.0), "slow")
    task = _start(
        client, "/api/v1/model/slow/fit", params={"datax": "stats[x]", "datay": "stats[y]"}
    )
    running = client.get(f"/api/v1/task/{task}/result")
    assert running.status_code == 202
    assert running.json() == {"id": task, "status": "PENDING", "result": None, "error": None}
    assert client.get(f"/api/v1/task/{task}/status").json()["finished"] is None
    done = wait_for_task(client, f"/api/v1/task/{task}/result")
    assert done["status"] == "SUCCESS" and done["result"]["model"] == "slow"


def test_a_failed_task_says_why(client: TestClient) -> None:
    # one class only: LogisticRegression refuses to fit, inside the task
    task = _start(
        client,
        "/api/v1/model/forecast/fit",
        params={"datax": "stats[x]"},
        json={"y": [0] * 20},
    )
    done = wait_for_task(client, f"/api/v1/task/{task}/result")
    assert done["status"] == "FAILURE" and done["result"] is None
    assert done["error"]["type"] == "InvalidData"  # the model's complaint about its input
    assert "could not fit" in done["error"]["message"] and "class" in done["error"]["message"]
    assert client.get(f"/api/v1/task/{task}/status").json()["status"] == "FAILURE"


def test_unknown_task(client: TestClient) -> None:
    assert_error(client.get("/api/v1/task/nope/status"), 404, "no task 'nope'")
    assert_error(client.get("/api/v1/task/nope/result"), 404, "no task 'nope'")
    assert_error(client.get(f"/api/v1/task/{'a' * 5000}/result"), 404, "no task")


def test_a_task_is_seen_only_in_its_bucket(client: TestClient, store: Omega) -> None:
    task = _start(client, PREDICT, params={"async": "true"}, json=X_SPLIT)
    wait_for_task(client, f"/api/v1/task/{task}/result")
    other = {"Omops-Bucket": "other"}
    assert_error(client.get(f"/api/v1/task/{task}/status", headers=other), 404, "bucket 'other'")
    assert_error(client.get(f"/api/v1/task/{task}/result", headers=other), 404, "bucket 'other'")

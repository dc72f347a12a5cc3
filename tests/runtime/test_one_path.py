"""One path for every action: the same input gets the same answer, or the same error, everywhere.

Each case goes through REST (sync and ``?async=true``, a real ``om runtime serve``
on the cluster's catalog, blobs and broker) and through ``om.runtime`` on each
executor (local, Celery on RabbitMQ, Celery on Redis). Every path must give the
same result, or the same error class and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from omops.errors import TaskFailed
from omops.omega import Omega
from omops.server._errors import ERROR_STATUS

from .support import TESTS, Cluster, make_stats

TIMEOUT = 90
STATS = make_stats()
X, Y = STATS[["a", "b"]], STATS["sales"]
#: (action, X, y): inputs a new user sends, right and wrong.
CASES: dict[str, tuple[str, pd.DataFrame, Any]] = {
    "fitted-order": ("predict", X, None),
    "reordered-columns": ("predict", X[["b", "a"]], None),
    "extra-columns": ("predict", STATS, None),
    "missing-columns": ("predict", X[["a"]], None),
    "wrong-types": ("predict", X.assign(a="x"), None),
    "empty-input": ("predict", X.iloc[:0], None),
    "probabilities": ("predict_proba", X[["b", "a"]], None),
    "score": ("score", X, Y),
    "too-few-targets": ("score", X, Y.iloc[:-1]),
    "text-targets": ("score", X, Y.map({0: "no", 1: "yes"})),
}
_CODES = {code: cls.__name__ for cls, (_, code) in ERROR_STATUS.items()}


def answer_or_error(run: Any) -> tuple[str, Any]:
    """``('ok', value)`` or ``('error', (type, message))`` of a runtime call."""
    try:
        return "ok", run()
    except TaskFailed as failed:
        return "error", (failed.exc_type, failed.exc_message)


def body(x: pd.DataFrame, y: Any) -> dict[str, Any]:
    """The JSON body a REST client sends for ``x`` (and targets ``y``)."""
    split = {"columns": list(x.columns), "data": x.to_numpy(dtype=object).tolist()}
    return split if y is None else {**split, "y": y.tolist()}


def rest_sync(client: Any, action: str, x: pd.DataFrame, y: Any) -> tuple[str, Any]:
    response = client.post(f"/api/v1/model/forecast/{action}", json=body(x, y))
    if response.status_code == 200:
        return "ok", response.json()["result"]
    error = response.json()
    return "error", (_CODES[error["error"]], error["message"])


def rest_async(client: Any, action: str, x: pd.DataFrame, y: Any) -> tuple[str, Any]:
    response = client.post(
        f"/api/v1/model/forecast/{action}", params={"async": "true"}, json=body(x, y)
    )
    if response.status_code != 202:  # refused before a task started
        error = response.json()
        return "error", (_CODES[error["error"]], error["message"])
    location = response.headers["location"]
    for _ in range(TIMEOUT * 20):
        done = client.get(location)
        if done.status_code == 200:
            result = done.json()
            if result["status"] == "SUCCESS":
                return "ok", result["result"]
            return "error", (result["error"]["type"], result["error"]["message"])
        time.sleep(0.05)
    raise AssertionError(f"task {location} did not finish in {TIMEOUT} s")


def runtime(om: Omega, cluster: Cluster, action: str, x: pd.DataFrame, y: Any) -> tuple[str, Any]:
    rt = om.runtime if cluster.broker is None else om.runtime.require(cluster.queue)
    proxy = rt.model("forecast")
    if y is None:
        return answer_or_error(lambda: getattr(proxy, action)(x).get(timeout=TIMEOUT))
    return answer_or_error(lambda: getattr(proxy, action)(x, y).get(timeout=TIMEOUT))


@pytest.fixture
def served(cluster: Cluster, tmp_path) -> Iterator[tuple[Omega, Any]]:
    """The cluster's Omega in a bucket of its own, and a client of a real server on it."""
    from server.support import Server  # noqa: PLC0415 - the server suite's helper

    om = cluster.omega()
    om.datasets.put(STATS, "stats", append=False)
    om.models.put(LogisticRegression().fit(X, Y), "forecast")
    variables = {"OMOPS_CATALOG": cluster.catalog, "OMOPS_BLOBS": cluster.blobs}
    if cluster.broker:  # the server's tasks go to the queue of the cluster's workers
        variables.update(OMOPS_BROKER=cluster.broker, OMOPS_LABEL=cluster.queue)
    variables["PYTHONPATH"] = str(TESTS)
    with Server(tmp_path, **variables) as server, server.client(**{"Omops-Bucket": om.bucket}) as c:
        yield om, c


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a[1] == b[1]
    return np.allclose(np.asarray(a[1], dtype=float), np.asarray(b[1], dtype=float))


def test_every_path_answers_alike(cluster: Cluster, served: tuple[Omega, Any]) -> None:
    om, client = served
    for case, (action, x, y) in CASES.items():
        paths = {
            "rest-sync": rest_sync(client, action, x, y),
            "rest-async": rest_async(client, action, x, y),
            "runtime": runtime(om, cluster, action, x, y),
        }
        first = paths["runtime"]
        different = {path: got for path, got in paths.items() if not _same(got, first)}
        assert not different, f"{case}: runtime answered {first}, but {different}"
        expected = EXPECTED[case]
        if expected[0] == "ok":
            assert first[0] == "ok", (case, first)
            want = expected[1]()
            np.testing.assert_allclose(np.asarray(first[1], dtype=float), want, err_msg=case)
        else:
            assert first[0] == "error", (case, first)
            kind, fragment = expected[1]
            assert first[1][0] == kind and fragment in first[1][1], (case, first)


_MODEL = LogisticRegression().fit(X, Y)
EXPECTED: dict[str, tuple[str, Any]] = {
    "fitted-order": ("ok", lambda: _MODEL.predict(X)),
    "reordered-columns": ("ok", lambda: _MODEL.predict(X)),
    "extra-columns": ("ok", lambda: _MODEL.predict(X)),
    "missing-columns": ("error", ("InvalidData", "input lacks column(s) ['b']")),
    "wrong-types": ("error", ("InvalidData", "the model could not predict this input")),
    "empty-input": ("error", ("InvalidData", "the input has no rows")),
    "probabilities": ("ok", lambda: _MODEL.predict_proba(X)),
    "score": ("ok", lambda: _MODEL.score(X, Y)),
    "too-few-targets": ("error", ("InvalidData", "there are 40 input rows but 39 targets")),
    "text-targets": ("error", ("InvalidData", "the model could not score this input")),
}

"""``om runtime serve --workers 2``: two server processes, one catalog, no stale model.

Both processes load and cache model revisions; the revision is resolved per
request, so a model put by a client is answered by each process at once. The
test warms both processes on the old revision, puts a new one, and fires
requests on fresh connections right away: every answer must come from the new
revision, and both processes must have answered (their own /metrics counts,
told apart by the Omops-Worker header).
"""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from server.support import PREDICT, X_SPLIT, Server, classifier, prepare

from omops.omega import Omega
from omops.server.routers.meta import WORKER_HEADER

REQUESTS = 120


def _fresh(url: str, path: str, **kwargs) -> httpx.Response:  # noqa: ANN003
    """One request on a connection of its own (the kernel picks the process)."""
    with httpx.Client(base_url=url, timeout=30, headers={"Connection": "close"}) as http:
        return http.post(path, **kwargs) if "json" in kwargs else http.get(path)


def _counts(url: str) -> dict[str, float]:
    """Predictions of 'forecast' counted by each server process, asked until both answered."""
    seen: dict[str, float] = {}
    for _ in range(200):
        answer = _fresh(url, "/metrics")
        assert answer.status_code == 200, answer.text
        found = re.search(
            r'omops_predictions_total\{[^}]*model="forecast"[^}]*\} ([0-9.e+]+)', answer.text
        )
        seen[answer.headers[WORKER_HEADER]] = float(found.group(1)) if found else 0.0
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only {sorted(seen)} answered /metrics")


def test_every_process_answers_with_the_new_revision_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prepare(Omega(home=home)).catalog.close()  # 'stats' and the model 'forecast'

    with Server(home, "--workers", "2") as server:
        with ThreadPoolExecutor(8) as pool:  # warm both processes on v1
            warm = list(pool.map(lambda _: _fresh(server.url, PREDICT, json=X_SPLIT), range(40)))
        old = {r.json()["revision"] for r in warm}
        assert len(old) == 1 and [r.json()["result"] for r in warm][0] == [0, 1]
        before = _counts(server.url)
        assert all(n > 0 for n in before.values()), before  # both cached the old revision

        client = Omega(home=home)
        new = client.models.put(classifier(flipped=True), "forecast").revision
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: _fresh(server.url, PREDICT, json=X_SPLIT), range(REQUESTS))
            )
        client.catalog.close()

        bodies = [a.json() for a in answers]
        assert {b["revision"] for b in bodies} == {new} and new not in old
        assert all(b["result"] == [1, 0] for b in bodies)  # the flipped model's answers
        after = _counts(server.url)
        assert set(after) == set(before)
        assert all(after[w] > before[w] for w in after), (before, after)  # both answered
        assert sum(after.values()) - sum(before.values()) == REQUESTS * 2  # two rows each


def test_runtime_status_shows_host_queues_and_running_tasks(tmp_path: Path) -> None:
    """`om runtime status` on a real Celery worker, while it runs a slow fit."""
    import os
    import subprocess
    import uuid

    import pytest
    from runtime.slow_models import Sleepy
    from runtime.support import OM, Cluster, make_stats

    broker = os.environ.get("OMOPS_TEST_BROKER") or pytest.fail("OMOPS_TEST_BROKER is not set")
    queue = f"omops-status-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    home.mkdir()
    cluster = Cluster(
        "status",
        home=home,
        catalog=f"sqlite:///{home / 'catalog.sqlite'}",
        blobs=str(home / "blobs"),
        broker=broker,
        queue=queue,
        gpu=f"{queue}-gpu",
    )
    try:
        worker = cluster.start_worker(queue, concurrency=1)
        om = cluster.omega("default")
        om.datasets.put(make_stats(), "stats")
        gate = tmp_path / "gate"
        om.models.put(Sleepy(delay=60, gate=str(gate)), "sleepy")
        running = om.runtime.require(queue).model("sleepy").fit("stats[^sales]", "stats[sales]")
        deadline = time.monotonic() + 60
        while True:
            shown = subprocess.run(
                [str(OM), "runtime", "status"],
                env=cluster.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            if running.id[:8] in shown.stdout or time.monotonic() > deadline:
                break
        gate.touch()
        running.get(timeout=60)
        row = next(line for line in shown.stdout.splitlines() if worker.hostname in line)
        assert socket.gethostname() in row and queue in row, shown.stdout
        assert f"omops.model(sleepy) {running.id[:8]}" in shown.stdout, shown.stdout
    finally:
        cluster.close()

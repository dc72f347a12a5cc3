"""Script runs on real Celery workers (RabbitMQ and Redis), each with a worker of its own."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
from runtime.support import Cluster

from omops.errors import TaskFailed
from omops.omega import Omega
from omops.plugins.package import build_wheel

from .conftest import SCRIPT_QUEUE
from .support import DEP_MODULE, USES_DEP, make_package

TIMEOUT = 240

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def worker_om(celery: Cluster) -> Omega:
    """The cluster's Omega in a bucket of this test's own."""
    return celery.omega()


def runtime(om: Omega):
    return om.runtime.require(SCRIPT_QUEUE)


def fresh_wheel(tmp_path: Path):
    """A package no worker has an environment for yet (a version of its own)."""
    version = f"1.{uuid.uuid4().int % 10**9}"
    return build_wheel(
        make_package(
            tmp_path, "fresh-dep-user", USES_DEP, version=version, deps=("omops-test-dep",)
        )
    )


def test_a_run_on_a_worker_uses_an_environment_there(celery: Cluster, worker_om: Omega, wheels):
    worker_om.scripts.put(wheels["echo"], "echo")

    record = runtime(worker_om).script("echo").run(n=3).get(timeout=TIMEOUT)

    assert record["result"]["kwargs"] == {"n": 3} and record["result"]["bucket"] == worker_om.bucket
    pool = {p.pid for w in celery.workers for p in psutil.Process(w.pid).children()}
    assert record["result"]["pid"] not in pool  # not a worker process: one of the environment
    assert record["result"]["prefix"].startswith(str(celery.home / "envs"))
    assert "hello from the script" in record["output"]


def test_a_worker_installs_dependencies_into_the_environment_once(
    celery: Cluster, worker_om: Omega, tmp_path: Path
):
    wheel = fresh_wheel(tmp_path)
    worker_om.scripts.put(wheel, "uses-dep")

    clock = time.perf_counter()
    first = runtime(worker_om).script("uses-dep").run().get(timeout=TIMEOUT)
    first_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    second = runtime(worker_om).script("uses-dep").run().get(timeout=TIMEOUT)
    second_seconds = time.perf_counter() - clock

    assert first["result"]["value"] == second["result"]["value"] == 42
    assert first["result"]["file"].startswith(first["env"]["path"])
    assert first["env"]["created"] is True and second["env"]["created"] is False
    assert second_seconds < first_seconds, (first_seconds, second_seconds)
    # the worker's own environment has not got the dependency
    probe = subprocess.run([sys.executable, "-c", f"import {DEP_MODULE}"], capture_output=True)
    assert probe.returncode != 0


def test_a_failing_script_fails_its_task_and_the_worker_lives_on(worker_om: Omega, wheels):
    worker_om.scripts.put(wheels["raises"], "raises")
    worker_om.scripts.put(wheels["echo"], "echo")

    with pytest.raises(TaskFailed) as caught:
        runtime(worker_om).script("raises").run(n=-2).get(timeout=TIMEOUT)

    assert caught.value.exc_type == "ValueError"
    assert caught.value.exc_message == "n must be positive, got -2"
    assert "in helper" in caught.value.remote_traceback
    assert runtime(worker_om).ping("alive").get(timeout=TIMEOUT)["pong"] == "alive"
    assert runtime(worker_om).script("echo").run().get(timeout=TIMEOUT)["result"]["kwargs"] == {}


def test_concurrent_first_runs_on_two_worker_processes_install_once(
    worker_om: Omega, tmp_path: Path
):
    worker_om.scripts.put(fresh_wheel(tmp_path), "uses-dep")

    with runtime(worker_om).parallel() as crt:  # the worker runs 2 at a time
        crt.script("uses-dep").run()
        crt.script("uses-dep").run()
        records = crt.run().get(timeout=TIMEOUT)

    assert [r["result"]["value"] for r in records] == [42, 42]
    assert sorted(r["env"]["created"] for r in records) == [False, True]
    assert len({r["env"]["path"] for r in records}) == 1


def test_the_script_writes_to_the_workers_store(worker_om: Omega, wheels):
    worker_om.scripts.put(wheels["writes"], "writes")
    record = runtime(worker_om).script("writes").run(rows=2, name="out").get(timeout=TIMEOUT)
    assert record["result"] == {"default": ["out"], "bucket": worker_om.bucket}
    pd.testing.assert_frame_equal(worker_om.datasets.get("out"), pd.DataFrame({"x": [0, 1]}))


def test_runs_in_an_experiment_are_tracked_on_workers(worker_om: Omega, wheels):
    worker_om.scripts.put(wheels["echo"], "echo")
    with worker_om.runtime.experiment("scripted") as exp:
        runtime(worker_om).script("echo").run(n=1).get(timeout=TIMEOUT)
    frame = exp.data(event=["task_call", "task_success"])
    assert list(zip(frame["event"], frame["key"], strict=True)) == [
        ("task_call", "omops.script"),
        ("task_success", "omops.script"),
    ]
    assert frame["value"].iloc[0]["args"] == {"name": "echo", "kwargs": {"n": 1}}

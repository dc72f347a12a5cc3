"""Celery only: status, routing by label, unanswered queues, results by id, dying workers.

Every worker here is a real ``om runtime worker`` process. Tests that need a
worker of their own (routing, killing) start it on queues named after the
test, so the session's shared workers never take their tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from omops.errors import TaskFailed, TaskTimeout

from .slow_models import Sleepy, runs
from .support import GPU, QUEUE, Cluster, make_stats

TIMEOUT = 60

pytestmark = pytest.mark.timeout(180)

CELERY = ["rabbitmq_cluster", pytest.param("redis_cluster", marks=pytest.mark.postgres)]


@pytest.fixture(params=CELERY, ids=["rabbitmq", "redis"])
def celery(request) -> Cluster:
    """Each Celery cluster in turn."""
    return request.getfixturevalue(request.param)


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"waited {timeout} s for {what}")


def test_status_lists_workers_and_their_queues(celery):
    main = celery.workers[0]

    state = celery.base.runtime.status()

    assert state["executor"] == "celery"
    assert state["broker"] == celery.broker.replace(":guest@", ":***@")
    info = state["workers"][main.hostname]
    assert info["queues"] == sorted([QUEUE, GPU]) and info["concurrency"] == 2
    assert isinstance(info["active"], int) and 0 <= info["active"] <= 2


def test_local_mode_reports_no_workers(celery):
    status = celery.base.runtime.mode(local=True).status()
    assert status["executor"] == "local" and status["workers"] == {}
    assert status["pool"]["size"] >= 1


@pytest.mark.slow  # starts a worker of its own
def test_require_routes_work_to_the_labelled_queue_only(celery):
    plain, gpu = f"{QUEUE}-routing", f"{QUEUE}-routing-gpu"
    celery.extra_queues.add(plain)
    worker = celery.start_worker(gpu, concurrency=1)  # listens on the gpu queue only
    runtime = celery.base.runtime

    not_for_it = runtime.require(plain).ping("plain")
    for_it = runtime.require(gpu).ping("gpu").get(timeout=TIMEOUT)

    assert for_it["pong"] == "gpu" and for_it["pid"] in worker.children()
    with pytest.raises(TaskTimeout):
        not_for_it.get(timeout=2)  # waits in its queue: the gpu worker does not take it
    assert not_for_it.status == "PENDING"
    assert runtime.status()["workers"][worker.hostname]["queues"] == [gpu]
    worker.kill()


def test_a_queue_nobody_listens_to_times_out(celery):
    label = f"{QUEUE}-nobody-listens"
    celery.extra_queues.add(label)
    result = celery.base.runtime.require(label).ping()

    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=r"within 1 s; is a worker listening on its queue"):
        result.get(timeout=1)

    assert time.monotonic() - started < 5
    assert result.status == "PENDING" and not result.ready()


@pytest.mark.postgres
@pytest.mark.slow  # a Python process of its own
def test_result_by_id_in_another_process(redis_cluster):
    """With Redis, results live in the broker: any client finds them by id."""
    om = redis_cluster.omega()
    om.datasets.put(make_stats(), "stats", append=False)
    om.models.put(Sleepy(), "model")
    rt = om.runtime.require(QUEUE)
    good = rt.model("model").fit("stats[^sales]", "stats[sales]")
    bad = rt.model("model").predict("nosuch")
    expected = good.get(timeout=TIMEOUT)
    with pytest.raises(TaskFailed):
        bad.get(timeout=TIMEOUT)

    script = (
        "import json, sys, omops\n"
        "from omops.errors import TaskFailed\n"
        "rt = omops.get_omega().runtime\n"
        "out = {'good': rt.result(sys.argv[1]).get(timeout=30)}\n"
        "try:\n"
        "    rt.result(sys.argv[2]).get(timeout=30)\n"
        "except TaskFailed as exc:\n"
        "    out['bad'] = [exc.exc_type, exc.exc_message]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, good.id, bad.id],
        env=redis_cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["good"] == expected
    assert out["bad"][0] == "NotFound" and "'nosuch'" in out["bad"][1]


# -- dying workers: a task is redelivered or reported failed, never lost -------


def start_slow_fit(cluster: Cluster, queue: str, marker: Path):
    """A fit that sleeps a minute on its first run; returns its result and Omega."""
    om = cluster.omega()
    om.datasets.put(make_stats(), "stats", append=False)
    om.models.put(Sleepy(delay=60, marker=str(marker)), "slow")
    result = om.runtime.require(queue).model("slow").fit("stats[^sales]", "stats[sales]")
    wait_for(lambda: runs(marker), "the fit to start")
    return result, om


@pytest.mark.slow  # starts two workers of its own
def test_killed_worker_task_is_redelivered_to_a_new_worker(rabbitmq_cluster, tmp_path):
    """SIGKILL to the whole worker: RabbitMQ requeues the unacknowledged task at once."""
    queue = f"{QUEUE}-kill-worker"
    first = rabbitmq_cluster.start_worker(queue, concurrency=1)
    marker = tmp_path / "runs"
    result, om = start_slow_fit(rabbitmq_cluster, queue, marker)
    (running,) = runs(marker)
    assert running in first.children()
    wait_for(lambda: result.status == "STARTED", "the STARTED state")

    first.kill()  # main process and pool at once: nobody can acknowledge or report
    assert not psutil.pid_exists(first.pid)
    second = rabbitmq_cluster.start_worker(queue, concurrency=1, wait=False)

    started = time.monotonic()
    summary = result.get(timeout=TIMEOUT)

    assert time.monotonic() - started < TIMEOUT
    assert summary["model"] == "slow" and summary["revision"]
    first_run, second_run = runs(marker)  # ran twice: killed, then redelivered
    assert first_run == running and second_run in second.children()
    assert om.models.get("slow").mean_ == pytest.approx(make_stats()["sales"].mean())
    assert result.status == "SUCCESS"
    second.kill()


@pytest.mark.slow  # waits for a killed task to run again
def test_killed_pool_process_task_is_requeued(celery, tmp_path):
    """SIGKILL to the pool process running the task: the worker requeues it.

    The session's worker survives (its pool replaces the process), so this
    runs on it rather than on a worker of its own.
    """
    worker = celery.workers[0]
    marker = tmp_path / "runs"
    result, om = start_slow_fit(celery, celery.queue, marker)
    (running,) = runs(marker)
    assert running in worker.children()

    os.kill(running, signal.SIGKILL)
    started = time.monotonic()
    summary = result.get(timeout=TIMEOUT)

    assert time.monotonic() - started < TIMEOUT
    assert summary["model"] == "slow"
    first_run, second_run = runs(marker)  # ran twice: killed, then requeued
    assert first_run == running and second_run != running and second_run in worker.children()
    assert om.models.metadata("slow").revision == summary["revision"]
    assert worker.proc.poll() is None  # the worker itself lives on
    wait_for(lambda: len(worker.children()) == 2, "the pool to replace the killed process")


@pytest.mark.parametrize(
    "value",
    [[0, 1, 1], {"model": "m", "revision": "abc"}, 1.5, None, "text", [], [{"a": 1}]],
)
def test_results_travel_packed_and_come_back_unchanged(value: object) -> None:
    """Celery reprs each result for its log line item by item: it gets one string."""
    from omops.runtime.celery_executor import _pack, _unpack

    packed = _pack(value)
    assert list(packed) == ["omops.json"] and isinstance(packed["omops.json"], str)
    assert _unpack(packed) == value
    assert _unpack([packed, _pack(2)]) == [value, 2]  # a group's or chord's results
    assert _unpack(value) == value  # anything not packed passes through


def test_replies_come_back_in_any_order_of_waiting(rabbitmq_cluster):
    """The reply queue is consumed between results: no reply is lost, early or late."""
    runtime = rabbitmq_cluster.base.runtime.require(QUEUE)
    first = [runtime.ping(i) for i in range(5)]
    assert first[2].get(timeout=TIMEOUT)["pong"] == 2  # the others' replies arrive meanwhile
    later = [runtime.ping(i) for i in range(5, 10)]
    for result in reversed(first + later):
        assert result.get(timeout=TIMEOUT)["pong"] == (first + later).index(result)
    unawaited = runtime.ping("never awaited")
    wait_for(lambda: unawaited.ready(), "a reply nobody waited for")
    assert runtime.ping("after").get(timeout=TIMEOUT)["pong"] == "after"
    assert runtime.result(unawaited.id).get(timeout=TIMEOUT)["pong"] == "never awaited"


def test_the_reply_queue_is_declared_once_while_it_is_consumed(rabbitmq_cluster, monkeypatch):
    """Celery's rpc backend declares it before every send; omops only while not consuming."""
    from celery.backends.rpc import RPCBackend

    declared: list[str] = []
    original = RPCBackend.on_task_call
    monkeypatch.setattr(
        RPCBackend,
        "on_task_call",
        lambda self, producer, task_id: (
            declared.append(task_id),
            original(self, producer, task_id),
        ),
    )
    runtime = rabbitmq_cluster.base.runtime.require(QUEUE)
    runtime.ping("warm").get(timeout=TIMEOUT)
    declared.clear()
    for i in range(5):
        assert runtime.ping(i).get(timeout=TIMEOUT)["pong"] == i
    assert declared == []

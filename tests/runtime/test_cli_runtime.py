"""``om runtime worker|status|model``: as the real executable, and in-process.

The executable runs against the session's clusters (see conftest.py): same
catalog, blobs and broker as the test, ``OMOPS_BUCKET`` set to the test's
bucket.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import orjson
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner, Result

from omops.cli.app import app

from .support import GPU, OM, QUEUE, Cluster, make_stats

pytestmark = pytest.mark.timeout(180)


def om_shell(cluster: Cluster, *args: str, bucket: str = "default") -> subprocess.CompletedProcess:
    """``om ARGS`` as a separate process configured like ``cluster``."""
    return subprocess.run(
        [str(OM), *args],
        env=cluster.env(OMOPS_BUCKET=bucket),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def om_here(cluster: Cluster, *args: str, bucket: str = "default") -> Result:
    """``om ARGS`` in this process (the autouse fixture forgets the default Omega after)."""
    return CliRunner().invoke(app, list(args), env=cluster.env(OMOPS_BUCKET=bucket))


def labelled(cluster: Cluster) -> list[str]:
    """``--label <queue>`` for a cluster with workers (the local executor has no queues)."""
    return ["--label", cluster.queue] if cluster.broker else []


@pytest.fixture
def forecast(cluster: Cluster):
    """A bucket with dataset ``stats`` and an unfitted ``forecast``; returns its Omega."""
    om = cluster.omega()
    om.datasets.put(make_stats(), "stats", append=False)
    om.models.put(LogisticRegression(), "forecast")
    return om


@pytest.mark.slow  # an `om` process of its own
def test_status_json_lists_workers_and_queues(rabbitmq_cluster):
    done = om_shell(rabbitmq_cluster, "runtime", "status", "--json")

    assert done.returncode == 0, done.stderr
    state = orjson.loads(done.stdout)
    assert state["executor"] == "celery" and "guest:***@" in state["broker"]
    main = rabbitmq_cluster.workers[0]
    assert state["workers"][main.hostname]["queues"] == sorted([QUEUE, GPU])
    assert state["workers"][main.hostname]["concurrency"] == 2


def test_status_table(rabbitmq_cluster):
    result = om_here(rabbitmq_cluster, "runtime", "status")

    assert result.exit_code == 0, result.output
    main = rabbitmq_cluster.workers[0]
    assert main.hostname in result.stdout and QUEUE in result.stdout


def test_status_without_a_broker(local_cluster):
    table = om_here(local_cluster, "runtime", "status")
    as_json = om_here(local_cluster, "runtime", "status", "--json")

    assert table.exit_code == 0 and "executor: local" in table.output
    status = orjson.loads(as_json.stdout)
    assert status["executor"] == "local" and status["workers"] == {}
    assert status["pool"] == {"size": os.cpu_count(), "started": False}


@pytest.mark.slow  # an `om` process of its own
def test_model_fit_from_the_shell_then_predict(rabbitmq_cluster):
    cluster = rabbitmq_cluster
    om = cluster.omega()
    om.datasets.put(make_stats(), "stats", append=False)
    om.models.put(LogisticRegression(), "forecast")

    fit = om_shell(
        cluster,
        "runtime",
        "model",
        "forecast",
        "fit",
        "stats[^sales]",
        "stats[sales]",
        "--label",
        QUEUE,
        bucket=om.bucket,
    )
    predict = om_here(
        cluster,
        "runtime",
        "model",
        "forecast",
        "predict",
        "stats[^sales]",
        "--rname",
        "preds",
        "--label",
        QUEUE,
        bucket=om.bucket,
    )

    assert fit.returncode == 0, fit.stderr
    assert orjson.loads(fit.stdout) == {
        "model": "forecast",
        "revision": om.models.metadata("forecast").revision,
    }
    assert predict.exit_code == 0, predict.output
    assert orjson.loads(predict.stdout)["dataset"] == "preds"
    assert len(om.datasets.get("preds")) == len(make_stats())


def test_model_actions(cluster, forecast):
    om = forecast
    label = labelled(cluster)

    search = om_here(
        cluster,
        "runtime",
        "model",
        "forecast",
        "gridsearch",
        "stats[^sales]",
        "stats[sales]",
        "--param",
        'parameters={"C": [0.01, 1.0]}',
        *label,
        bucket=om.bucket,
    )
    predict = om_here(
        cluster,
        "runtime",
        "model",
        "forecast",
        "predict",
        "stats[^sales]",
        *label,
        bucket=om.bucket,
    )
    score = om_here(
        cluster,
        "runtime",
        "model",
        "forecast",
        "score",
        "stats[^sales]",
        "stats[sales]",
        *label,
        bucket=om.bucket,
    )

    assert search.exit_code == 0, search.output
    assert orjson.loads(search.stdout)["gridsearch"] == "forecast/gridsearch"
    assert om.models.exists("forecast/gridsearch") and om.datasets.exists("forecast/gridsearch")
    assert predict.exit_code == 0, predict.output
    expected = om.models.get("forecast").predict(make_stats()[["a", "b"]]).tolist()
    assert orjson.loads(predict.stdout) == expected
    assert score.exit_code == 0, score.output
    assert 0.5 < orjson.loads(score.stdout) <= 1.0


def test_model_local_flag_runs_here(rabbitmq_cluster):
    om = rabbitmq_cluster.omega()
    om.datasets.put(make_stats(), "stats", append=False)
    om.models.put(LogisticRegression(), "forecast")

    # a queue no worker consumes: only --local can answer within the timeout
    result = om_here(
        rabbitmq_cluster,
        "runtime",
        "model",
        "forecast",
        "fit",
        "stats[^sales]",
        "stats[sales]",
        "--local",
        "--label",
        f"{QUEUE}-nobody",
        "--timeout",
        "30",
        bucket=om.bucket,
    )

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["revision"] == om.models.metadata("forecast").revision


def test_a_failed_task_is_one_error_line(cluster, forecast):
    result = om_here(
        cluster,
        "runtime",
        "model",
        "forecast",
        "predict",
        "nosuch",
        *labelled(cluster),
        bucket=forecast.bucket,
    )

    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: NotFound: dataset 'nosuch' does not exist")
    assert "Traceback" not in result.output


def test_a_task_that_times_out_is_one_error_line(rabbitmq_cluster):
    label = f"{QUEUE}-nobody"
    rabbitmq_cluster.extra_queues.add(label)
    result = om_here(
        rabbitmq_cluster,
        "runtime",
        "model",
        "forecast",
        "predict",
        "stats",
        "--label",
        label,
        "--timeout",
        "1",
    )

    assert result.exit_code == 1
    assert "did not finish within 1.0 s" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["forecast", "explode", "stats"], "'explode' is not one of fit"),
        (
            ["forecast", "fit", "stats[^sales]", "stats[sales]", "--rname", "x"],
            "--rname does not apply to fit",
        ),
        (["forecast", "predict", "stats", "--label", "no spaces"], "invalid tag"),
    ],
)
def test_usage_errors(local_cluster, args, fragment):
    result = om_here(local_cluster, "runtime", "model", *args)

    assert result.exit_code in (1, 2)
    assert fragment in result.output


def test_worker_needs_a_broker(local_cluster):
    result = om_here(local_cluster, "runtime", "worker")

    assert result.exit_code == 1
    assert "no broker configured: set OMOPS_BROKER" in result.stderr


@pytest.mark.slow  # starts a worker of its own
def test_worker_consumes_the_default_queue_unless_labelled(rabbitmq_cluster):
    """The one test on the shared ``default`` queue: a ping, answered by any worker there."""
    worker = rabbitmq_cluster.start_worker(concurrency=1, wait=False)
    token = uuid.uuid4().hex

    answer = rabbitmq_cluster.base.runtime.ping(token).get(timeout=90)  # no require(): 'default'

    assert answer["pong"] == token
    status = om_here(rabbitmq_cluster, "runtime", "status", "--json")
    assert orjson.loads(status.stdout)["workers"][worker.hostname]["queues"] == ["default"]
    worker.kill()

"""Experiments: runs, events, artifacts, providers, tracked tasks and tracked models.

Most tests run on both catalog backends (the ``om`` fixture); the tasks run on
the local executor and, in ``test_celery_*``, on a real ``om runtime worker``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

import omops
from omops.catalog.tracking import event_row
from omops.errors import InvalidData, InvalidQuery, NotFound, PluginError, TaskFailed
from omops.omega import Omega
from omops.runtime._state import TRACKERS_TTL
from omops.server import create_app
from omops.tracking import CURRENT, Experiment

from .support import QUEUE, Worker, wait_for

COLUMNS = ["experiment", "run", "step", "dt", "event", "key", "value", "node", "user"]


def make_stats(n: int = 40, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["sales"] = (df["a"] + 0.5 * df["b"] > 0).astype("int64")
    return df


def store_model(om: Omega) -> LogisticRegression:
    """Dataset ``stats`` and the fitted model ``mymodel`` (on a, b -> sales)."""
    df = make_stats()
    om.datasets.put(df, "stats", append=False)
    model = LogisticRegression().fit(df[["a", "b"]], df["sales"])
    om.models.put(model, "mymodel")
    return model


@pytest.fixture
def model(om: Omega) -> LogisticRegression:
    return store_model(om)


def events(exp: Experiment, **query) -> list[tuple]:
    """``(event, key)`` of the selected events, in logging order."""
    frame = exp.data(**query)
    keys = [None if pd.isna(key) else key for key in frame["key"]]
    return list(zip(frame["event"], keys, strict=True))


# -- runs and events ------------------------------------------------------------------


def test_with_block_opens_a_run_with_start_system_stop(om: Omega):
    with om.runtime.experiment("myexp") as exp:
        assert exp.run == 1
        assert CURRENT.get()["run"] == 1 and CURRENT.get()["experiment"] == "myexp"
        exp.log_metric("accuracy", 0.93)
    assert CURRENT.get() is None

    frame = exp.data()
    assert events(exp) == [
        ("start", None),
        ("system", "system"),
        ("metric", "accuracy"),
        ("stop", None),
    ]
    system = frame["value"].iloc[1]
    assert system["python"]["version"] == sys.version.split()[0]
    assert system["platform"]["node"] == socket.gethostname()
    assert {"omops", "pandas", "numpy", "sqlalchemy"} <= set(system["packages"])
    assert system["packages"]["pandas"] == pd.__version__
    assert frame["value"].iloc[-1] == {"status": "ok"}
    (info,) = exp.runs()
    assert info["run"] == 1 and info["provider"] == "simple"
    assert info["started"] <= info["stopped"]


def test_runs_are_numbered_across_with_blocks_and_instances(om: Omega):
    for expected in (1, 2):
        with om.runtime.experiment("myexp") as exp:
            exp.log_metric("accuracy", expected / 10, step=expected)
        assert exp.run == expected
    with om.runtime.experiment("other") as other:
        pass
    again = om.runtime.experiment("myexp")

    assert other.run == 1
    assert again.run == 2  # outside a block: the latest run
    assert [r["run"] for r in again.runs()] == [1, 2]
    assert list(again.data(event="metric", run="all")["value"]) == [0.1, 0.2]
    assert list(again.data(event="metric")["run"]) == [2]


def test_every_event_type_is_logged_with_its_value(om: Omega):
    with om.runtime.experiment("myexp") as exp:
        exp.log_metric("loss", np.float64(0.5), step=3)
        exp.log_metric("epochs", 10)
        exp.log_param("C", 1.0)
        exp.log_param("layers", [64, 32])
        exp.log_data("confusion", {"tp": 5, "fp": np.int64(1)}, step=3)
        exp.log_event("custom", "note", "anything")
        exp.log_artifact(pd.DataFrame({"x": [1, 2]}), "frame")

    frame = exp.data(event=["metric", "param", "data", "custom", "artifact"])
    assert list(zip(frame["event"], frame["key"], frame["value"].iloc[:6], strict=False)) == [
        ("metric", "loss", 0.5),
        ("metric", "epochs", 10),
        ("param", "C", 1.0),
        ("param", "layers", [64, 32]),
        ("data", "confusion", {"tp": 5, "fp": 1}),
        ("custom", "note", "anything"),
    ]
    assert list(frame["step"].iloc[:6]) == [3, pd.NA, pd.NA, pd.NA, 3, pd.NA]
    artifact = frame["value"].iloc[6]
    assert artifact["name"] == "frame" and artifact["store"] == "datasets"
    assert artifact["kind"] == "pandas.dataframe"
    assert artifact["ref"].startswith("_experiments/myexp/1/frame@")


def test_log_metric_wants_a_number(om: Omega):
    exp = om.runtime.experiment("myexp")
    with pytest.raises(InvalidData, match="a metric is a number; got str for 'acc'"):
        exp.log_metric("acc", "high")


def test_data_columns_and_dtypes(om: Omega):
    before = pd.Timestamp.now(tz="UTC")
    with om.runtime.experiment("myexp") as exp:
        exp.log_metric("acc", 0.9, step=1)
        exp.log_param("C", 1.0)

    frame = exp.data()

    assert list(frame.columns) == COLUMNS
    assert frame.index.tolist() == list(range(len(frame)))
    assert pd.api.types.is_datetime64_any_dtype(frame["dt"])
    assert str(frame["dt"].dt.tz) == "UTC"
    assert frame["dt"].is_monotonic_increasing
    assert before - pd.Timedelta("1s") <= frame["dt"].min()
    assert frame["dt"].max() <= pd.Timestamp.now(tz="UTC")
    assert frame["run"].dtype == np.int64
    assert frame["step"].dtype == "Int64"
    assert frame["value"].dtype == object
    for column in ("experiment", "event", "key", "node", "user"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    assert set(frame["experiment"]) == {"myexp"}
    assert set(frame["node"]) == {socket.gethostname()}
    assert set(frame["user"]) == {getpass.getuser()}


def test_data_of_an_experiment_without_events_is_empty_with_the_same_dtypes(om: Omega):
    with om.runtime.experiment("full") as full:
        full.log_metric("acc", 1.0)
    empty = om.runtime.experiment("empty").data(run="all")

    assert empty.empty and list(empty.columns) == COLUMNS
    assert empty.dtypes.to_dict() == full.data().dtypes.to_dict()


def test_data_raw_keeps_json_text(om: Omega):
    with om.runtime.experiment("myexp") as exp:
        exp.log_param("layers", [64, 32])
    frame = exp.data(event="param", raw=True)
    assert list(frame["value"]) == ["[64,32]"]


def test_data_filters_by_event_key_run_and_time(om: Omega):
    exp = om.runtime.experiment("myexp")
    for run in (1, 2, 3):
        with exp:
            exp.log_metric("accuracy", run / 10)
            exp.log_metric("loss", run)
            exp.log_param("C", run)
            if run == 2:
                time.sleep(0.02)
                middle = pd.Timestamp.now(tz="UTC")

    def values(**query):
        return list(exp.data(**query)["value"])

    assert values(event="metric", key="accuracy", run="all") == [0.1, 0.2, 0.3]
    assert values(event="metric", key="accuracy") == [0.3]  # 'latest' by default
    assert values(event="metric", key="accuracy", run="latest") == [0.3]
    assert values(event="metric", key="accuracy", run=2) == [0.2]
    assert values(event="metric", key="accuracy", run=[1, 3]) == [0.1, 0.3]
    assert values(event="metric", key="accuracy", run=[]) == []
    assert values(event="metric", key="accuracy", run=99) == []
    assert values(event=["metric", "param"], key=["loss", "C"], run=1) == [1, 1]
    assert values(key="loss", run="all") == [1, 2, 3]
    assert values(event="param", run="all", since=middle) == [3]
    naive = middle.tz_convert(None).to_pydatetime()
    assert values(event="param", run="all", since=naive) == [3]  # naive means UTC
    assert values(event="param", run="all", since=middle.isoformat()) == [3]
    assert values(event="param", run="all", since=dt.datetime(2000, 1, 1)) == [1, 2, 3]
    assert set(exp.data(run="all")["run"]) == {1, 2, 3}
    for bad in ("first", True, 1.5, ["1"]):
        with pytest.raises(InvalidQuery, match="run must be 'all', 'latest', a run number"):
            exp.data(run=bad)


def test_log_events_writes_a_batch_of_dicts_and_tuples(om: Omega):
    with om.runtime.experiment("myexp") as exp:
        logged = exp.log_events(
            [
                {"key": "loss", "value": 0.5, "step": 1},  # event defaults to metric
                {"event": "param", "key": "C", "value": 2.0},
                ("metric", "loss", 0.25, 2),
                ("data", "sample", {"rows": 3}),
            ]
        )
        assert exp.log_events(("metric", "loss", i / 100, 10 + i) for i in range(1_000)) == 1_000
        assert exp.log_events([]) == 0

    assert logged == 4
    frame = exp.data(event=["metric", "param", "data"])
    assert len(frame) == 1_004
    head = frame.head(4)
    assert list(head["event"]) == ["metric", "param", "metric", "data"]
    assert list(head["key"]) == ["loss", "C", "loss", "sample"]
    assert list(head["value"]) == [0.5, 2.0, 0.25, {"rows": 3}]
    assert list(head["step"]) == [1, pd.NA, 2, pd.NA]
    assert list(frame["step"].iloc[4:]) == list(range(10, 1_010))


def test_an_error_in_the_block_stops_the_run_as_error(om: Omega):
    exp = om.runtime.experiment("myexp")
    with pytest.raises(ZeroDivisionError), exp:
        exp.log_metric("x", 1)
        1 / 0  # noqa: B018
    assert exp.data(event="stop")["value"].tolist() == [{"status": "error"}]
    assert CURRENT.get() is None


def test_unknown_provider_and_bad_name_are_refused(om: Omega):
    with pytest.raises(PluginError, match="'mlflow' is not one of simple, profiling, notrack"):
        om.runtime.experiment("myexp", provider="mlflow")
    with pytest.raises(omops.errors.InvalidName):
        om.runtime.experiment("../up")


def test_experiments_lists_and_drop_removes(om: Omega):
    with om.runtime.experiment("a") as a:
        a.log_metric("m", 1)
    om.runtime.experiment("b").log_param("p", 1)

    listed = {x["name"]: (x["runs"], x["events"]) for x in om.runtime.experiments()}
    assert listed == {"a": (1, 4), "b": (1, 1)}
    assert om["dev"].runtime.experiments() == []

    a.drop()
    assert [x["name"] for x in om.runtime.experiments()] == ["b"]


# -- artifacts ----------------------------------------------------------------------


def test_artifacts_restore_frames_models_and_json(om: Omega):
    frame = pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"]})
    clf = LogisticRegression(C=2.0).fit(make_stats()[["a", "b"]], make_stats()["sales"])
    with om.runtime.experiment("myexp") as exp:
        assert exp.log_artifact(frame, "frame") == "_experiments/myexp/1/frame"
        assert exp.log_artifact(clf, "clf") == "_experiments/myexp/1/clf"
        exp.log_artifact({"lr": 0.1}, "config")

    pd.testing.assert_frame_equal(exp.restore_artifact("frame"), frame)
    restored = exp.restore_artifact("clf")
    assert isinstance(restored, LogisticRegression) and restored.C == 2.0
    np.testing.assert_array_equal(restored.coef_, clf.coef_)
    assert exp.restore_artifact("config") == {"lr": 0.1}
    kinds = exp.data(event="artifact")["value"].map(lambda v: (v["store"], v["kind"])).tolist()
    assert kinds == [
        ("datasets", "pandas.dataframe"),
        ("models", "sklearn.joblib"),
        ("datasets", "python.json"),
    ]


def test_artifacts_restore_the_latest_or_a_given_run(om: Omega):
    exp = om.runtime.experiment("myexp")
    for version in (1, 2):
        with exp:
            exp.log_artifact(pd.DataFrame({"v": [version]}), "frame")

    assert exp.restore_artifact("frame")["v"].tolist() == [2]
    assert exp.restore_artifact("frame", run=1)["v"].tolist() == [1]
    with pytest.raises(NotFound, match="no artifact 'missing' in experiment 'myexp'"):
        exp.restore_artifact("missing")
    with pytest.raises(NotFound, match="run 7"):
        exp.restore_artifact("frame", run=7)


def test_artifact_of_an_unknown_type_says_how_to_store_it(om: Omega):
    exp = om.runtime.experiment("myexp")
    with pytest.raises(PluginError, match="pass kind='python.pickle'"):
        exp.log_artifact(object(), "thing")
    assert exp.log_artifact({1, 2}, "aset", kind="python.pickle")
    assert exp.restore_artifact("aset") == {1, 2}


# -- providers ------------------------------------------------------------------------


def test_notrack_logs_nothing(om: Omega, model):
    with om.runtime.experiment("quiet", provider="notrack") as exp:
        assert exp.run is None
        exp.log_metric("accuracy", 0.9)
        exp.log_param("C", 1.0)
        assert exp.log_events([("metric", "x", 1)]) == 0
        assert exp.log_artifact(pd.DataFrame({"x": [1]}), "frame") is None
        om.runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get()

    assert exp.data(run="all").empty
    assert exp.runs() == []
    assert om.datasets.list("_experiments/*") == []


def test_notrack_inside_a_tracked_block_silences_its_tasks(om: Omega, model):
    with om.runtime.experiment("outer") as outer:
        with om.runtime.experiment("quiet", provider="notrack"):
            om.runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get()
        om.runtime.model("mymodel").predict("stats[a,b]").get()

    assert [e for e, _ in events(outer)].count("task_call") == 1
    assert ("task_call", "omops.model.predict") in events(outer)


def test_profiling_samples_cpu_and_memory_in_the_block(om: Omega):
    with om.runtime.experiment("prof", provider="profiling", interval=0.05) as exp:
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:  # keep a CPU busy
            sum(range(1_000))

    samples = exp.data(event="system", key="profile")
    assert len(samples) >= 3  # every 0.05 s for 0.4 s, and one at the end
    for value in samples["value"]:
        assert {"cpu_percent", "rss", "vms", "threads", "pid"} <= set(value)
        assert value["rss"] > 0 and value["pid"] == os.getpid()
    assert max(v["cpu_percent"] for v in samples["value"]) > 0
    assert exp.runs()[0]["provider"] == "profiling"
    assert events(exp)[-1] == ("stop", None)


def test_profiling_samples_inside_tasks(om: Omega, model):
    with om.runtime.experiment("prof", provider="profiling", interval=60) as exp:
        om.runtime.model("mymodel").fit("stats[a,b]", "stats[sales]").get()

    sequence = events(exp)
    # the task's sampler reports when the task ends, the block's when the block ends
    assert sequence == [
        ("start", None),
        ("system", "system"),
        ("task_call", "omops.model.fit"),
        ("task_success", "omops.model.fit"),
        ("system", "profile"),
        ("system", "profile"),
        ("stop", None),
    ]
    samples = exp.data(event="system", key="profile")["value"]
    assert all(v["rss"] > 0 and "cpu_percent" in v for v in samples)


# -- tasks inside a block ---------------------------------------------------------------


def test_tasks_in_the_block_log_call_score_and_success(om: Omega, model):
    with om.runtime.experiment("myexp") as exp:
        exp.log_param("C", 1.0)
        score = om.runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get()
    om.runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get()  # not in a block

    assert events(exp) == [
        ("start", None),
        ("system", "system"),
        ("param", "C"),
        ("task_call", "omops.model.score"),
        ("metric", "score"),
        ("task_success", "omops.model.score"),
        ("stop", None),
    ]
    frame = exp.data()
    call = frame["value"].iloc[3]
    assert call["args"] == {
        "name": "mymodel",
        "action": "score",
        "X": "stats[a,b]",
        "Y": "stats[sales]",
        "kwargs": {},
    }
    assert (
        frame["value"].iloc[4]
        == score
        == pytest.approx(model.score(make_stats()[["a", "b"]], make_stats()["sales"]))
    )
    assert frame["value"].iloc[5] == {"result": score}


def test_a_failing_task_logs_task_failure(om: Omega, model):
    with om.runtime.experiment("myexp") as exp:
        with pytest.raises(TaskFailed, match="missing"):
            om.runtime.model("mymodel").predict("missing").get()

    assert events(exp)[2:4] == [
        ("task_call", "omops.model.predict"),
        ("task_failure", "omops.model.predict"),
    ]
    failure = exp.data(event="task_failure")["value"].iloc[0]
    assert failure["type"] == "NotFound" and "missing" in failure["message"]


def test_tasks_in_a_batch_are_tracked(om: Omega, model):
    with om.runtime.experiment("myexp") as exp, om.runtime.parallel() as crt:
        crt.model("mymodel").predict("stats[a,b]")
        crt.model("mymodel").score("stats[a,b]", "stats[sales]")
        crt.run().get(timeout=120)

    names = events(exp, event=["task_call", "task_success"])
    assert sorted(names) == sorted(
        [
            ("task_call", "omops.model.predict"),
            ("task_success", "omops.model.predict"),
            ("task_call", "omops.model.score"),
            ("task_success", "omops.model.score"),
        ]
    )


# -- tracked models -----------------------------------------------------------------------


def test_track_logs_every_prediction_with_inputs_outputs_and_revision(om: Omega, model):
    exp = om.runtime.experiment("prod")
    exp.track("mymodel")
    revision = om.models.metadata("mymodel").revision
    expected = model.predict(make_stats()[["a", "b"]]).tolist()

    result = om.runtime.model("mymodel").predict("stats[a,b]").get()
    om.runtime.model("mymodel").predict_proba("stats[a,b]").get()
    om.runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get()  # not a prediction

    predictions = exp.data(event="predict")
    assert len(predictions) == 2 and set(predictions["key"]) == {"mymodel"}
    value = predictions["value"].iloc[0]
    assert value["model"] == "mymodel" and value["revision"] == revision
    assert value["action"] == "predict"
    assert value["output"] == result == expected
    assert value["input"]["rows"] == 40
    sent = pd.DataFrame(**{k: value["input"]["data"][k] for k in ("index", "columns", "data")})
    pd.testing.assert_frame_equal(sent, make_stats()[["a", "b"]])
    assert "sha256" not in value["input"]
    assert predictions["value"].iloc[1]["action"] == "predict_proba"


def test_large_inputs_are_logged_as_a_sample_and_a_hash(om: Omega, model):
    big = pd.concat([make_stats(n=150, seed=1), make_stats(n=150, seed=2)], ignore_index=True)
    om.datasets.put(big.iloc[:150], "big1", append=False)
    om.datasets.put(big.iloc[150:].reset_index(drop=True), "big2", append=False)
    exp = om.runtime.experiment("prod")
    exp.track("mymodel")

    for name in ("big1", "big1", "big2"):
        om.runtime.model("mymodel").predict(f"{name}[a,b]").get()

    first, again, other = exp.data(event="predict")["value"]
    assert first["input"]["rows"] == 150 and "data" not in first["input"]
    sample = first["input"]["sample"]
    assert len(sample["data"]) == 10 and sample["columns"] == ["a", "b"]
    assert len(first["input"]["sha256"]) == 64 and int(first["input"]["sha256"], 16) >= 0
    assert first["input"]["sha256"] == again["input"]["sha256"]
    assert first["input"]["sha256"] != other["input"]["sha256"]
    assert first["output"]["length"] == 150 and len(first["output"]["head"]) == 100
    expected = model.predict(big.iloc[:150][["a", "b"]]).tolist()[:100]
    assert first["output"]["head"] == expected


def test_untrack_stops_logging(om: Omega, model):
    exp = om.runtime.experiment("prod")
    exp.track("mymodel")
    om.runtime.model("mymodel").predict("stats[a,b]").get()
    exp.untrack("mymodel")
    om.runtime.model("mymodel").predict("stats[a,b]").get()

    assert len(exp.data(event="predict", run="all")) == 1


def test_track_an_unknown_model_is_not_found(om: Omega):
    with pytest.raises(NotFound):
        om.runtime.experiment("prod").track("nope")


def test_two_experiments_can_track_one_model(om: Omega, model):
    first, second = om.runtime.experiment("one"), om.runtime.experiment("two")
    first.track("mymodel")
    second.track("mymodel")
    om.runtime.model("mymodel").predict("stats[a,b]").get()
    assert len(first.data(event="predict")) == len(second.data(event="predict")) == 1


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Omega, TestClient]]:
    om = Omega(home=str(tmp_path / "served"))
    store_model(om)
    # as a client on this machine: a keyless app refuses Starlette's made-up 'testclient'
    with TestClient(create_app(om), base_url="http://127.0.0.1", client=("127.0.0.1", 1)) as client:
        yield om, client
    om.catalog.close()


def test_track_logs_rest_predictions(served):
    """Needs server/routers/model.py::run_sync to call log_prediction (pending)."""
    om, client = served
    exp = om.runtime.experiment("prod")
    exp.track("mymodel")
    row = {"columns": ["a", "b"], "data": [[0.5, -0.25]]}

    response = client.post("/api/v1/model/mymodel/predict", json=row)
    assert response.status_code == 200, response.text

    predictions = exp.data(event="predict")
    assert len(predictions) == 1
    value = predictions["value"].iloc[0]
    assert value["model"] == "mymodel"
    assert value["revision"] == om.models.metadata("mymodel").revision
    assert value["input"]["rows"] == 1 and value["input"]["data"]["data"] == [[0.5, -0.25]]
    assert value["output"] == response.json()["result"]


# -- plots --------------------------------------------------------------------------------


def test_plot_draws_one_line_per_run(om: Omega):
    exp = om.runtime.experiment("myexp")
    for run in (1, 2, 3):
        with exp:
            for step in range(4):
                exp.log_metric("accuracy", run / 10 + step / 100, step=step)

    fig = exp.plot("accuracy")

    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["run 1", "run 2", "run 3"]
    assert ax.lines[0].get_xdata().tolist() == [0, 1, 2, 3]
    assert ax.lines[2].get_ydata().tolist() == pytest.approx([0.3, 0.31, 0.32, 0.33])
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "accuracy"
    assert len(exp.plot("accuracy", run=[1, 2]).axes[0].lines) == 2
    fig.savefig(os.devnull, format="png")


def test_plot_without_steps_uses_time_and_a_given_axes(om: Omega):
    with om.runtime.experiment("myexp") as exp:
        exp.log_metric("loss", 1.0)
        exp.log_metric("loss", 0.5)
    host = Figure()
    ax = host.subplots()

    fig = exp.plot("loss", ax=ax)

    assert fig is host and ax.get_xlabel() == "time (UTC)"
    assert ax.lines[0].get_ydata().tolist() == [1.0, 0.5]
    with pytest.raises(NotFound, match="no metric 'nope'"):
        exp.plot("nope")


# -- concurrency and scale ----------------------------------------------------------------

_RACE = """
import json, sys
from omops.omega import Omega
om = Omega(catalog=sys.argv[1], blobs=sys.argv[2])
exp = om.runtime.experiment("race")
numbers = []
for i in range(int(sys.argv[3])):
    with exp:
        exp.log_metric("i", i)
        numbers.append(exp.run)
print(json.dumps(numbers))
"""


def test_concurrent_runs_from_two_processes_get_distinct_numbers(
    om: Omega, catalog_url: str, tmp_path: Path
):
    om.runtime.experiment("race").id  # noqa: B018 - the schema exists before the race
    count = 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, catalog_url, str(tmp_path / "blobs"), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]

    first, second = (json.loads(out) for out, _ in outputs)
    assert not set(first) & set(second)
    assert sorted(first + second) == list(range(1, 2 * count + 1))
    assert first == sorted(first) and second == sorted(second)
    frame = om.runtime.experiment("race").data(run="all")
    per_run = frame.groupby("run")["event"].apply(list)
    assert len(per_run) == 2 * count
    assert all(e == ["start", "system", "metric", "stop"] for e in per_run)


@pytest.mark.slow
def test_data_of_a_million_events_answers_in_seconds(om: Omega, capsys):
    exp = om.runtime.experiment("big")
    with exp:
        ids, run = exp.id, exp.run
        node, user = socket.gethostname(), getpass.getuser()
        start = time.time()
        for chunk in range(10):
            rows = [
                (
                    ids,
                    run,
                    i,
                    start + i / 1e4,
                    "metric",
                    "loss" if i % 2 else "acc",
                    str(i / 7),
                    node,
                    user,
                )
                for i in range(chunk * 100_000, (chunk + 1) * 100_000)
            ]
            om.catalog.tracking.log(rows)
        exp.log_param("note", {"events": 1_000_000})

    began = time.perf_counter()
    frame = exp.data(run="all")
    took = time.perf_counter() - began
    began = time.perf_counter()
    losses = exp.data(key="loss")
    took_filtered = time.perf_counter() - began
    with capsys.disabled():
        print(
            f"\nexp.data() of {len(frame):,} events on {om.catalog.dialect}: {took:.2f} s; "
            f"key='loss' ({len(losses):,}): {took_filtered:.2f} s"
        )

    assert len(frame) == 1_000_004 and len(losses) == 500_000
    assert took < 30 and took_filtered < 30
    assert frame["step"].iloc[2:1_000_002].tolist() == list(range(1_000_000))
    assert frame["value"].iloc[2 + 700] == pytest.approx(100.0)
    assert frame["value"].iloc[-2] == {"events": 1_000_000}
    assert frame["dt"].iloc[2:1_000_002].is_monotonic_increasing


# -- on a Celery worker ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def celery(tmp_path_factory) -> Iterator[tuple[Omega, int]]:
    """An Omega on a SQLite catalog shared with one real worker; yields it and the pool pid."""
    broker = os.environ.get("OMOPS_TEST_BROKER")
    if not broker:
        pytest.fail("OMOPS_TEST_BROKER is not set: run `bash scripts/test.sh` or source its env")
    home = tmp_path_factory.mktemp("celery")
    om = Omega(
        catalog=f"sqlite:///{home / 'catalog.sqlite'}",
        blobs=str(home / "blobs"),
        broker=broker,
        home=str(home),
    )
    store_model(om)
    worker = Worker(om, home, broker=broker)
    try:
        pid = worker.wait_ready()
        yield om, pid
    finally:
        worker.stop()
        om.catalog.close()


def test_celery_tasks_in_the_block_are_tracked_by_the_worker(celery):
    om, pid = celery
    runtime = om.runtime.require(QUEUE)
    assert pid != os.getpid()
    with om.runtime.experiment("remote") as exp:
        score = runtime.model("mymodel").score("stats[a,b]", "stats[sales]").get(timeout=60)
        with pytest.raises(TaskFailed):
            runtime.model("mymodel").predict("missing").get(timeout=60)

    assert events(exp) == [
        ("start", None),
        ("system", "system"),
        ("task_call", "omops.model.score"),
        ("metric", "score"),
        ("task_success", "omops.model.score"),
        ("task_call", "omops.model.predict"),
        ("task_failure", "omops.model.predict"),
        ("stop", None),
    ]
    assert exp.data(event="metric", key="score")["value"].tolist() == [score]
    assert 0.5 < score <= 1.0


def test_celery_profiling_samples_come_from_the_worker(celery):
    om, pid = celery
    runtime = om.runtime.require(QUEUE)
    with om.runtime.experiment("remote", provider="profiling", interval=60) as exp:
        runtime.model("mymodel").fit("stats[a,b]", "stats[sales]").get(timeout=60)

    pids = [v["pid"] for v in exp.data(event="system", key="profile")["value"]]
    assert pids == [pid, os.getpid()]  # the task's sample, then the block's


def test_celery_tracked_predictions_are_logged_by_the_worker(celery):
    om, _ = celery
    runtime = om.runtime.require(QUEUE)
    exp = om.runtime.experiment("prod")
    exp.track("mymodel")
    # A worker trusts its list of a model's trackers for TRACKERS_TTL seconds; an earlier
    # test's (failed) prediction of this model may have just filled it with "none".
    time.sleep(TRACKERS_TTL)
    try:
        result = runtime.model("mymodel").predict("stats[a,b]").get(timeout=60)
        # the worker writes behind: wait until its writer thread has inserted the event
        frame = wait_for(lambda: exp.data(event="predict"), "the worker's predict event")
    finally:
        exp.untrack("mymodel")
    value = frame["value"].iloc[0]
    assert value["output"] == result
    assert value["revision"] == om.models.metadata("mymodel").revision
    assert value["input"]["rows"] == 40


def test_event_row_matches_the_frame_columns(om: Omega):
    exp = om.runtime.experiment("myexp")
    om.catalog.tracking.log([event_row(exp.id, exp.run, "metric", "k", 1.0, 5)])
    frame = exp.data()
    assert frame[["run", "step", "event", "key", "value"]].iloc[0].tolist() == [
        1,
        5,
        "metric",
        "k",
        1.0,
    ]


def test_reading_an_experiment_never_written_creates_nothing(om) -> None:
    written = om.runtime.experiment("written")
    written.log_metric("a", 1.0)
    exp = om.runtime.experiment("typo")
    data = exp.data()
    assert data.empty
    assert list(data.columns) == list(written.data().columns)
    assert exp.data(run="all").empty and exp.data(run=3).empty
    assert exp.runs() == []
    with pytest.raises(NotFound, match="no artifact 'model'"):
        exp.restore_artifact("model")
    exp.untrack("anything")
    exp.drop()
    assert [e["name"] for e in om.runtime.experiments()] == ["written"]


def test_reading_first_then_writing_uses_one_experiment(om) -> None:
    exp = om.runtime.experiment("later")
    assert exp.data().empty
    exp.log_metric("loss", 0.5)
    assert exp.data(event="metric")["value"].tolist() == [0.5]
    assert [e["name"] for e in om.runtime.experiments()] == ["later"]

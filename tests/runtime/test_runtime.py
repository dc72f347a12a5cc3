"""The runtime contract: every executor (local, Celery on RabbitMQ, Celery on Redis).

Each test runs once per executor through the parametrized ``cluster`` fixture
(see conftest.py); ``rt`` is ``om.runtime`` on the queue that cluster's
workers consume and ``om`` is an Omega in a bucket of the test's own.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from omops.errors import InvalidData, InvalidName, OmopsError, TaskFailed, TaskTimeout
from omops.omega import Omega
from omops.runtime import TaskResult

from .slow_models import Sleepy
from .support import make_stats

TIMEOUT = 60  # generous bound for one task; a healthy one takes well under a second

pytestmark = pytest.mark.timeout(120)


def fitted(df: pd.DataFrame, estimator=None):
    """What the task should produce: the estimator fitted here on the same data."""
    estimator = estimator if estimator is not None else LogisticRegression()
    return estimator.fit(df[["a", "b"]], df["sales"])


def temporaries(om) -> list[str]:
    return om.datasets.list("_temp/*")


@pytest.fixture
def forecast(om, stats):
    """An unfitted LogisticRegression stored as ``forecast``."""
    om.models.put(LogisticRegression(), "forecast")
    return "forecast"


@pytest.fixture
def fitted_forecast(om, stats, rt, forecast):
    rt.model("forecast").fit("stats[^sales]", "stats[sales]").get(timeout=TIMEOUT)
    return "forecast"


# -- fitting: each fit is a new revision ---------------------------------------


def test_fit_stores_a_new_revision(om, rt, stats, forecast):
    ((before, _),) = om.models.revisions("forecast")

    result = rt.model("forecast").fit("stats[^sales]", "stats[sales]")
    summary = result.get(timeout=TIMEOUT)

    assert summary["model"] == "forecast"
    revisions = [rev for rev, _ in om.models.revisions("forecast")]
    assert revisions == [before, summary["revision"]]
    model = om.models.get("forecast")
    assert list(model.feature_names_in_) == ["a", "b"]  # the selector dropped 'sales'
    np.testing.assert_allclose(model.coef_, fitted(stats).coef_)
    assert not hasattr(om.models.get(f"forecast@{before}"), "coef_")


def test_partial_fit_stores_a_new_revision(om, rt, stats):
    om.models.put(SGDClassifier(random_state=0), "sgd")

    first = rt.model("sgd").partial_fit("stats[^sales]", "stats[sales]", classes=[0, 1])
    revisions = [first.get(timeout=TIMEOUT)["revision"]]
    second = rt.model("sgd").partial_fit("stats[^sales]", "stats[sales]")  # updates the first
    revisions.append(second.get(timeout=TIMEOUT)["revision"])

    assert [rev for rev, _ in om.models.revisions("sgd")][1:] == revisions
    expected = SGDClassifier(random_state=0)
    for _ in range(2):
        expected.partial_fit(stats[["a", "b"]], stats["sales"], classes=[0, 1])
    np.testing.assert_allclose(om.models.get("sgd").coef_, expected.coef_)


def test_fit_transform_stores_the_model_and_returns_the_result(om, rt, stats):
    om.models.put(StandardScaler(), "scaler")

    values = rt.model("scaler").fit_transform("stats[^sales]").get(timeout=TIMEOUT)

    expected = StandardScaler().fit_transform(stats[["a", "b"]])
    np.testing.assert_allclose(values, expected)
    assert len(om.models.revisions("scaler")) == 2
    np.testing.assert_allclose(om.models.get("scaler").mean_, stats[["a", "b"]].mean())


def test_a_fit_on_an_older_revision_of_the_model_becomes_the_latest(om, rt, stats):
    first = om.models.put(LogisticRegression(C=0.01), "forecast").revision
    om.models.put(LogisticRegression(C=100.0), "forecast")

    summary = (
        rt.model(f"forecast@{first}").fit("stats[^sales]", "stats[sales]").get(timeout=TIMEOUT)
    )

    assert om.models.metadata("forecast").revision == summary["revision"]
    assert om.models.get("forecast").C == 0.01


# -- applying ------------------------------------------------------------------


def test_predict_returns_a_list(rt, stats, fitted_forecast):
    values = rt.model("forecast").predict("stats[^sales]").get(timeout=TIMEOUT)

    assert values == fitted(stats).predict(stats[["a", "b"]]).tolist()


def test_repeated_predictions_keep_their_answers(om, rt, stats, fitted_forecast):
    """From the second call on a model may get an array (the array lane): same answers."""
    expected = fitted(stats)
    X = stats[["a", "b"]]  # noqa: N806
    for _ in range(3):
        values = rt.model("forecast").predict("stats[^sales]").get(timeout=TIMEOUT)
        assert values == expected.predict(X).tolist()
        proba = rt.model("forecast").predict_proba("stats[^sales]").get(timeout=TIMEOUT)
        np.testing.assert_allclose(proba, expected.predict_proba(X))
    om.datasets.put(stats[["b", "a"]], "swapped")  # columns out of the fitted order: aligned
    om.datasets.put(stats[["b"]], "partial")
    for _ in range(2):
        assert (
            rt.model("forecast").predict("swapped").get(timeout=TIMEOUT)
            == expected.predict(X).tolist()
        )
        with pytest.raises(TaskFailed, match=r"input lacks column\(s\) \['a'\]") as failed:
            rt.model("forecast").predict("partial").get(timeout=TIMEOUT)
        assert failed.value.exc_type == "InvalidData"


def test_predict_with_rname_stores_a_dataset(om, rt, stats, fitted_forecast):
    summary = rt.model("forecast").predict("stats[^sales]", rName="preds").get(timeout=TIMEOUT)

    assert summary["dataset"] == "preds" and summary["rows"] == len(stats)
    assert summary["revision"] == om.datasets.metadata("preds").revision
    stored = om.datasets.get("preds")
    assert stored["value"].tolist() == fitted(stats).predict(stats[["a", "b"]]).tolist()


def test_predict_proba_and_decision_function(rt, stats, fitted_forecast):
    proba = rt.model("forecast").predict_proba("stats[^sales]")
    decision = rt.model("forecast").decision_function("stats[^sales]")

    expected = fitted(stats)
    np.testing.assert_allclose(
        proba.get(timeout=TIMEOUT), expected.predict_proba(stats[["a", "b"]])
    )
    np.testing.assert_allclose(
        decision.get(timeout=TIMEOUT), expected.decision_function(stats[["a", "b"]])
    )


def test_predict_proba_with_rname_stores_one_column_per_class(om, rt, stats, fitted_forecast):
    rt.model("forecast").predict_proba("stats[^sales]", rName="proba").get(timeout=TIMEOUT)

    stored = om.datasets.get("proba")
    assert list(stored.columns) == ["0", "1"]
    np.testing.assert_allclose(stored.to_numpy(), fitted(stats).predict_proba(stats[["a", "b"]]))


def test_transform_with_a_fitted_model(om, rt, stats):
    om.models.put(StandardScaler().fit(stats[["a", "b"]]), "scaler")

    values = rt.model("scaler").transform("stats[^sales]").get(timeout=TIMEOUT)

    np.testing.assert_allclose(values, StandardScaler().fit_transform(stats[["a", "b"]]))
    assert len(om.models.revisions("scaler")) == 1  # transform changes nothing


def test_score(rt, stats, fitted_forecast):
    score = rt.model("forecast").score("stats[^sales]", "stats[sales]").get(timeout=TIMEOUT)

    assert isinstance(score, float)
    assert score == pytest.approx(fitted(stats).score(stats[["a", "b"]], stats["sales"]))


def test_gridsearch_stores_the_search_its_results_and_the_best_model(om, rt, stats, forecast):
    grid = {"C": [0.001, 1.0, 10.0]}

    summary = (
        rt.model("forecast")
        .gridsearch("stats[^sales]", "stats[sales]", parameters=grid)
        .get(timeout=TIMEOUT)
    )

    expected = GridSearchCV(LogisticRegression(), grid).fit(stats[["a", "b"]], stats["sales"])
    assert summary["model"] == "forecast"
    assert summary["gridsearch"] == "forecast/gridsearch"
    assert summary["best_params"] == expected.best_params_
    assert summary["best_score"] == pytest.approx(expected.best_score_)
    # the best estimator is the model's new revision
    assert len(om.models.revisions("forecast")) == 2
    assert om.models.metadata("forecast").revision == summary["revision"]
    best = om.models.get("forecast")
    assert best.C == expected.best_params_["C"] and hasattr(best, "coef_")
    # the search itself, and its cv_results_ as a dataset
    search = om.models.get("forecast/gridsearch")
    assert isinstance(search, GridSearchCV) and search.best_params_ == expected.best_params_
    results = om.datasets.get("forecast/gridsearch")
    assert len(results) == 3
    assert results["mean_test_score"].tolist() == pytest.approx(
        expected.cv_results_["mean_test_score"].tolist()
    )


def test_gridsearch_without_parameters_fails(rt, stats, forecast):
    with pytest.raises(TaskFailed) as caught:
        rt.model("forecast").gridsearch("stats[^sales]", "stats[sales]", parameters={}).get(
            timeout=TIMEOUT
        )
    assert caught.value.exc_type == "InvalidData"
    assert "parameters" in caught.value.exc_message


# -- data arguments: selectors, filters, revisions, in-memory data -------------


def test_column_selectors(rt, stats, fitted_forecast):
    values = rt.model("forecast").predict("stats[a,b]").get(timeout=TIMEOUT)

    assert values == fitted(stats).predict(stats[["a", "b"]]).tolist()


def test_filters_dict(rt, stats, fitted_forecast):
    spec = {"name": "stats[^sales]", "a__gte": 0.0, "b__lt": 1.0}

    values = rt.model("forecast").predict(spec).get(timeout=TIMEOUT)

    rows = stats[(stats["a"] >= 0.0) & (stats["b"] < 1.0)]
    assert 0 < len(rows) < len(stats)
    assert values == fitted(stats).predict(rows[["a", "b"]]).tolist()


def test_dataset_revision(om, rt, stats, fitted_forecast):
    first = om.datasets.metadata("stats").revision
    more = make_stats(n=15, seed=11)
    om.datasets.put(more, "stats")  # appends: the latest revision has 55 rows

    old = rt.model("forecast").predict(f"stats@{first}[^sales]").get(timeout=TIMEOUT)
    new = rt.model("forecast").predict("stats[^sales]").get(timeout=TIMEOUT)

    assert len(old) == len(stats) and len(new) == len(stats) + len(more)


def test_model_revision(om, rt, stats, forecast):
    first = rt.model("forecast").fit("stats[^sales]", "stats[sales]").get(timeout=TIMEOUT)
    flipped = stats.assign(sales=1 - stats["sales"])
    om.datasets.put(flipped, "flipped", append=False)
    rt.model("forecast").fit("flipped[^sales]", "flipped[sales]").get(timeout=TIMEOUT)

    old = rt.model(f"forecast@{first['revision']}").predict("stats[^sales]")
    new = rt.model("forecast").predict("stats[^sales]")

    expected = fitted(stats).predict(stats[["a", "b"]])
    assert old.get(timeout=TIMEOUT) == expected.tolist()
    assert new.get(timeout=TIMEOUT) == (1 - expected).tolist()


def test_in_memory_dataframe(om, rt, stats, fitted_forecast):
    values = rt.model("forecast").predict(stats[["a", "b"]]).get(timeout=TIMEOUT)

    assert values == fitted(stats).predict(stats[["a", "b"]]).tolist()
    assert temporaries(om) == []


def test_in_memory_ndarray_and_list(om, rt, stats):
    X, y = stats[["a", "b"]].to_numpy(), stats["sales"].to_numpy()  # noqa: N806
    om.models.put(LogisticRegression(), "plain")

    rt.model("plain").fit(X, y).get(timeout=TIMEOUT)
    from_array = rt.model("plain").predict(X)
    from_list = rt.model("plain").predict(X.tolist())

    expected = LogisticRegression().fit(X, y).predict(X).tolist()
    assert from_array.get(timeout=TIMEOUT) == expected
    assert from_list.get(timeout=TIMEOUT) == expected
    np.testing.assert_allclose(om.models.get("plain").coef_, LogisticRegression().fit(X, y).coef_)
    assert temporaries(om) == []


def test_temporary_datasets_are_removed_after_a_failure(om, rt, stats, fitted_forecast):
    with pytest.raises(TaskFailed) as wrong_columns:
        rt.model("forecast").predict(stats[["a"]]).get(timeout=TIMEOUT)  # 'b' is missing
    with pytest.raises(TaskFailed) as no_model:
        rt.model("nosuch").fit(stats[["a", "b"]], stats["sales"].to_numpy()).get(timeout=TIMEOUT)

    assert wrong_columns.value.exc_type == "InvalidData"
    assert no_model.value.exc_type == "NotFound"
    assert temporaries(om) == []


def test_a_model_reference_takes_no_columns(rt):
    with pytest.raises(InvalidName):
        rt.model("forecast[a]")


def test_rname_is_checked_before_anything_is_sent(om, rt, stats, fitted_forecast):
    with pytest.raises(InvalidName):
        rt.model("forecast").predict(stats[["a", "b"]], rName="../escape")
    assert temporaries(om) == []


# -- results: status, ready, id, failures, timeouts ----------------------------


def test_result_handle(rt):
    result = rt.ping("hello")

    value = result.get(timeout=TIMEOUT)

    assert isinstance(result, TaskResult)
    assert isinstance(result.id, str) and result.id
    assert value["pong"] == "hello" and {"host", "pid"} <= set(value)
    assert result.status == "SUCCESS" and result.ready()
    again = rt.result(result.id)
    assert again.id == result.id
    assert again.get(timeout=TIMEOUT) == value and again.status == "SUCCESS"


def test_failure_carries_the_remote_exception(rt, stats, fitted_forecast):
    result = rt.model("forecast").predict("nosuch[^sales]")

    with pytest.raises(TaskFailed) as caught:
        result.get(timeout=TIMEOUT)

    failure = caught.value
    assert isinstance(failure, OmopsError) and isinstance(failure, RuntimeError)
    assert failure.exc_type == "NotFound"
    assert "'nosuch'" in failure.exc_message and "does not exist" in failure.exc_message
    assert failure.remote_traceback.startswith("Traceback (most recent call last)")
    assert "omops.errors.NotFound" in failure.remote_traceback
    assert str(failure).startswith("NotFound: ")
    assert result.status == "FAILURE" and result.ready()
    with pytest.raises(TaskFailed):
        rt.result(result.id).get(timeout=TIMEOUT)


def test_an_action_the_model_lacks_fails(om, rt, stats):
    om.models.put(StandardScaler(), "scaler")

    with pytest.raises(TaskFailed) as caught:
        rt.model("scaler").predict_proba("stats[^sales]").get(timeout=TIMEOUT)

    assert caught.value.exc_type == "InvalidData"
    assert "predict_proba" in caught.value.exc_message


def test_timeout_then_the_result(om, rt, stats, tmp_path):
    gate = tmp_path / "gate"  # the task waits (up to a minute) until this file exists
    om.models.put(Sleepy(delay=TIMEOUT, gate=str(gate)), "sleepy")
    with rt.parallel() as crt:
        crt.model("sleepy").predict("stats[^sales]")
        result = crt.run()

    started = time.monotonic()
    with pytest.raises(TaskTimeout, match="did not finish within 0.05 s") as caught:
        result.get(timeout=0.05)

    assert time.monotonic() - started < 3.0  # Celery waits for results in steps of 1 s
    assert isinstance(caught.value, TimeoutError)
    assert not result.ready() and result.status in ("PENDING", "STARTED")
    gate.touch()
    assert result.get(timeout=TIMEOUT) == [[0.0] * len(stats)]
    assert result.ready() and result.status == "SUCCESS"


# -- where work runs: mode(local=True), require(label) --------------------------


def test_mode_local_runs_in_this_process(cluster, om, rt, stats, forecast):
    here = rt.mode(local=True)

    summary = here.model("forecast").fit("stats[^sales]", "stats[sales]").get(timeout=TIMEOUT)

    assert here.ping().get(timeout=TIMEOUT)["pid"] == os.getpid()
    remote_pid = rt.ping().get(timeout=TIMEOUT)["pid"]
    assert (remote_pid == os.getpid()) is (cluster.broker is None)
    # what was fitted here is what a worker predicts with: one catalog, one blob store
    assert om.models.metadata("forecast").revision == summary["revision"]
    assert (
        rt.model("forecast").predict("stats[^sales]").get(timeout=TIMEOUT)
        == fitted(stats).predict(stats[["a", "b"]]).tolist()
    )


def test_require_a_label(cluster, rt, stats, fitted_forecast):
    if cluster.broker is None:
        with pytest.warns(UserWarning, match="no effect on the local executor"):
            gpu = rt.require(cluster.gpu)
    else:
        gpu = rt.require(cluster.gpu)

    values = gpu.model("forecast").predict("stats[^sales]").get(timeout=TIMEOUT)

    assert gpu.label == cluster.gpu
    assert values == fitted(stats).predict(stats[["a", "b"]]).tolist()


def test_the_default_label_is_default(om):
    assert om.runtime.label == "default"


def test_a_label_without_a_broker_is_said_to_do_nothing_once(tmp_path):
    om = Omega(home=str(tmp_path))
    with pytest.warns(UserWarning, match=r"require\('gpu'\) has no effect.*OMOPS_BROKER"):
        om.runtime.require("gpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        om.runtime.require("gpu")  # said once per Omega
        om["dev"].runtime.require("gpu")  # and its bucket views
        om.runtime.mode(local=True).require("default")
    with pytest.raises(InvalidName):
        om.runtime.require("no spaces")


# -- batches -------------------------------------------------------------------


def test_parallel(om, rt, stats, fitted_forecast):
    om.models.put(fitted(stats, LinearRegression()), "linear")

    with rt.parallel() as crt:
        crt.model("forecast").predict("stats[^sales]")
        crt.model("linear").predict("stats[^sales]")
        crt.ping("third")
        result = crt.run()
    first, second, third = result.get(timeout=TIMEOUT)

    assert first == fitted(stats).predict(stats[["a", "b"]]).tolist()
    np.testing.assert_allclose(second, fitted(stats, LinearRegression()).predict(stats[["a", "b"]]))
    assert third["pong"] == "third"
    assert result.status == "SUCCESS"


def test_parallel_with_a_failing_call(om, rt, stats, fitted_forecast):
    with rt.parallel() as crt:
        crt.model("forecast").predict("stats[^sales]")
        crt.model("forecast").predict("nosuch")
        result = crt.run()

    with pytest.raises(TaskFailed) as caught:
        result.get(timeout=TIMEOUT)
    assert caught.value.exc_type == "NotFound"
    assert result.status == "FAILURE"


def test_sequence_feeds_each_result_to_the_next_step(om, rt, stats):
    scaler = StandardScaler().fit(stats[["a", "b"]])
    scaled = scaler.transform(stats[["a", "b"]])
    om.models.put(scaler, "scaler")
    om.models.put(LogisticRegression().fit(scaled, stats["sales"].to_numpy()), "classifier")

    with rt.sequence() as crt:
        crt.model("scaler").transform("stats[^sales]")
        crt.model("classifier").predict()  # X is None: the transformed data
        result = crt.run()

    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    pipeline.fit(stats[["a", "b"]], stats["sales"])
    assert result.get(timeout=TIMEOUT) == pipeline.predict(stats[["a", "b"]]).tolist()


def test_sequence_runs_in_order(om, rt, stats, forecast):
    with rt.sequence() as crt:
        crt.model("forecast").fit("stats[^sales]", "stats[sales]")
        crt.model("forecast").predict("stats[^sales]")  # X given: the fitted model predicts
        result = crt.run()

    assert result.get(timeout=TIMEOUT) == fitted(stats).predict(stats[["a", "b"]]).tolist()
    assert len(om.models.revisions("forecast")) == 2


def test_mapreduce_gives_the_last_call_the_list(om, rt, stats, fitted_forecast):
    om.models.put(fitted(stats, LinearRegression()), "linear")
    om.models.put(FunctionTransformer(np.mean, kw_args={"axis": 0}), "mean")

    with rt.mapreduce() as crt:
        crt.model("forecast").predict("stats[^sales]")
        crt.model("linear").predict("stats[^sales]")
        crt.model("mean").transform()  # gets [forecast's predictions, linear's predictions]
        result = crt.run()

    X = stats[["a", "b"]]  # noqa: N806
    expected = (fitted(stats).predict(X) + fitted(stats, LinearRegression()).predict(X)) / 2
    np.testing.assert_allclose(result.get(timeout=TIMEOUT), expected)
    assert rt.result(result.id).get(timeout=TIMEOUT) == result.get(timeout=TIMEOUT)


def test_mapreduce_of_one_call_collects_its_result(rt, stats, fitted_forecast):
    with rt.mapreduce() as crt:
        crt.model("forecast").predict("stats[^sales]")
        result = crt.run()

    assert result.get(timeout=TIMEOUT) == [fitted(stats).predict(stats[["a", "b"]]).tolist()]


def test_an_empty_batch_is_an_error(rt):
    with rt.parallel() as crt, pytest.raises(InvalidData, match="collected no calls"):
        crt.run()


def test_a_failing_step_ends_the_sequence(om, rt, stats, fitted_forecast):
    with rt.sequence() as crt:
        crt.model("forecast").predict("nosuch")
        crt.model("forecast").predict(stats[["a", "b"]])  # never runs: its input is dropped
        result = crt.run()

    with pytest.raises(TaskFailed) as caught:
        result.get(timeout=TIMEOUT)
    assert caught.value.exc_type == "NotFound"
    assert temporaries(om) == []


def test_a_failing_map_call_fails_the_mapreduce(om, rt, stats, fitted_forecast):
    with rt.mapreduce() as crt:
        crt.model("forecast").predict("stats[^sales]")
        crt.model("forecast").predict("nosuch")
        crt.model("forecast").predict(stats[["a", "b"]])  # the reducer never runs
        result = crt.run()

    with pytest.raises(TaskFailed) as caught:
        result.get(timeout=TIMEOUT)
    assert caught.value.exc_type == "NotFound"
    assert "'nosuch'" in caught.value.exc_message
    assert temporaries(om) == []

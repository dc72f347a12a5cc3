"""Drift of a tracked model's inputs on synthetic traffic where the answer is known.

Runs on both catalog backends (the ``om`` fixture): the events are read by
SQL that differs between SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from omops.errors import InvalidData, InvalidQuery, NotFound
from omops.monitoring import DEFAULT_THRESHOLDS, DriftReport, drift, trackers
from omops.runtime.actions import perform

from .support import MODEL, REFERENCE, predict, store, traffic, training


def features(report: DriftReport) -> dict[str, dict]:
    return {f.name: f for f in report.features}


def test_same_distribution_is_not_drifted(om):
    store(om)
    predict(om, traffic(300, seed=1))

    report = om.runtime.model(MODEL).drift(since="1h")

    assert report.status == "ok" and report.rows == 300 and report.predictions == 3
    assert not report.drifted and report.alerts == []
    found = features(report)
    assert [(f.kind, f.test) for f in found.values()] == [
        ("numeric", "ks"),
        ("numeric", "ks"),
        ("categorical", "chi2"),
    ]
    for feature in found.values():
        assert feature.psi < 0.1 and not feature.drifted
        assert feature.rows == 300 and feature.reference_rows == 2000
    assert found["b"].p_value > 0.05 and found["c"].p_value > 0.05
    assert report.reference["name"] == REFERENCE
    assert report.reference["revision"] == om.datasets.metadata(REFERENCE).revision


def test_a_chance_low_p_value_with_a_small_psi_is_not_drift(om):
    """On the same distribution, one test in twenty is "significant": PSI keeps it quiet."""
    store(om)
    predict(om, traffic(300, seed=1))

    a = features(om.runtime.model(MODEL).drift(since="1h", alert=False))["a"]
    assert a.p_value < 0.05 and a.psi < 0.1 and not a.drifted

    om.runtime.experiment("prod").track(MODEL, thresholds={"psi": 0.0})  # the test alone
    assert om.runtime.model(MODEL).drift(since="1h", alert=False).drifted_features == ["a"]


def test_a_shifted_mean_drifts_that_feature_only(om):
    store(om)
    predict(om, traffic(300, seed=1, shift=1.0))

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)

    found = features(report)
    assert report.drifted and report.drifted_features == ["a"]
    assert found["a"].statistic > 0.3 and found["a"].p_value < 1e-10 and found["a"].psi > 0.5
    assert not found["b"].drifted and not found["c"].drifted


def test_a_new_category_drifts(om):
    store(om)
    mixed = traffic(300, seed=1)
    mixed.loc[mixed.index[:150], "c"] = "new"
    predict(om, mixed)

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)

    assert report.drifted_features == ["c"]
    c = features(report)["c"]
    assert c.p_value < 1e-10 and c.psi > 1.0


def test_the_window_holds_only_its_predictions(om):
    store(om)
    predict(om, traffic(300, seed=1, shift=3.0))
    time.sleep(0.05)
    boundary = time.time()
    time.sleep(0.05)
    predict(om, traffic(300, seed=2))
    model = om.runtime.model(MODEL)

    later = model.drift(since=pd.Timestamp(boundary, unit="s", tz="UTC"), alert=False)
    earlier = model.drift(
        since="1h", until=pd.Timestamp(boundary, unit="s").isoformat(), alert=False
    )

    assert later.rows == 300 and not later.drifted
    assert earlier.rows == 300 and earlier.drifted_features == ["a"]


def test_an_empty_window_is_a_report_without_data(om):
    store(om)
    predict(om, traffic(100))

    report = om.runtime.model(MODEL).drift(since="2000-01-01", until="2000-01-02")

    assert report.status == "no_data" and report.rows == 0 and not report.drifted
    assert "no tracked predictions" in report.message
    assert all(f.statistic is None and f.note == "no values in the window" for f in report.features)
    assert report.to_dict()["features"][0]["p_value"] is None


def test_few_rows_are_reported_but_not_judged(om):
    store(om)
    predict(om, traffic(10, shift=5.0))

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)

    a = features(report)["a"]
    assert a.psi > 1 and not a.drifted and "fewer than min_rows=30" in a.note


def test_thresholds_are_per_model(om):
    store(om, thresholds={"psi": 5.0})
    predict(om, traffic(300, seed=1, shift=1.0))
    model = om.runtime.model(MODEL)

    strict = model.drift(since="1h", alert=False)
    assert not strict.drifted and strict.thresholds["psi"] == 5.0
    assert strict.thresholds["p_value"] == DEFAULT_THRESHOLDS["p_value"]

    om.runtime.experiment("prod").track(MODEL, thresholds={"psi": 0.2, "min_rows": 500})
    assert not model.drift(since="1h", alert=False).drifted  # 300 rows < 500
    om.runtime.experiment("prod").track(MODEL, thresholds={"min_rows": 10})
    relaxed = model.drift(since="1h", alert=False)
    assert relaxed.drifted_features == ["a"]
    assert relaxed.thresholds == {"p_value": 0.05, "psi": 0.2, "error_rate": 0.05, "min_rows": 10}
    # the reference given first was kept through both updates
    assert relaxed.reference["name"] == REFERENCE


def test_report_as_frame_and_dict(om):
    store(om)
    predict(om, traffic(300, seed=1, shift=1.0))

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)

    frame = report.to_frame()
    assert list(frame.columns[:7]) == [
        "name",
        "kind",
        "test",
        "statistic",
        "p_value",
        "psi",
        "drifted",
    ]
    assert frame.set_index("name")["drifted"].to_dict() == {"a": True, "b": False, "c": False}
    body = report.to_dict()
    assert body["model"] == MODEL and body["drifted"] is True and body["rows"] == 300
    assert set(body["reference"]) == {"name", "revision", "rows"}
    assert body["features"][0]["name"] == "a" and body["error_rate"] == 0.0


def test_a_reference_can_be_given_per_call(om):
    store(om, track=False)
    om.runtime.experiment("prod").track(MODEL)  # tracked, no reference
    om.datasets.put(traffic(2000, seed=9, shift=1.0), "shifted_X", append=False)
    predict(om, traffic(300, seed=1, shift=1.0))
    model = om.runtime.model(MODEL)

    with pytest.raises(InvalidQuery, match="no reference dataset.*reference="):
        model.drift(since="1h")

    report = model.drift(since="1h", reference="shifted_X", alert=False)
    assert not report.drifted and report.reference["name"] == "shifted_X"
    assert model.drift(since="1h", reference=REFERENCE, alert=False).drifted


def test_the_model_must_be_tracked(om):
    store(om, track=False)
    with pytest.raises(NotFound, match="not tracked.*track"):
        om.runtime.model(MODEL).drift(reference=REFERENCE)
    with pytest.raises(NotFound, match="does not exist"):
        om.runtime.model("nope").drift()


def test_a_reference_without_the_models_columns_is_refused(om):
    store(om, track=False)
    om.datasets.put(training()[["a", "b"]], "partial", append=False)
    exp = om.runtime.experiment("prod")

    with pytest.raises(InvalidData, match=r"no column\(s\) \['c'\].*features="):
        exp.track(MODEL, reference="partial")
    with pytest.raises(NotFound):
        exp.track(MODEL, reference="missing")
    assert trackers(om, MODEL) == []  # nothing was tracked

    exp.track(MODEL, reference=REFERENCE)
    with pytest.raises(InvalidData, match=r"no column\(s\) \['c'\]"):
        om.runtime.model(MODEL).drift(reference="partial")
    om.datasets.put({"not": "a table"}, "document")
    with pytest.raises(InvalidData, match="not a table"):
        om.runtime.model(MODEL).drift(reference="document")


def test_fewer_features_can_be_watched(om):
    store(om, track=False)
    om.datasets.put(training()[["a", "b"]], "partial", append=False)
    om.runtime.experiment("prod").track(MODEL, reference="partial", features=["a", "b"])
    predict(om, traffic(300, seed=1, shift=1.0))

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)
    assert [f.name for f in report.features] == ["a", "b"] and report.drifted_features == ["a"]


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"thresholds": {"psi": -1}}, InvalidQuery, "psi=-1 must be a number from 0"),
        ({"thresholds": {"p_value": "0.05"}}, InvalidQuery, "must be a number"),
        ({"thresholds": {"pvalue": 0.1}}, InvalidQuery, "unknown threshold 'pvalue'"),
        ({"thresholds": [0.1]}, InvalidQuery, "must be a dict"),
        ({"webhook": "ftp://example.com/x"}, InvalidQuery, "http:// or https://"),
        ({"reference": "train_X[a]"}, InvalidQuery, "column selector"),
        ({"features": "a"}, InvalidQuery, "list of column names"),
        ({"alert_every": "soon"}, InvalidQuery, "not a duration"),
    ],
)
def test_bad_monitoring_options_are_refused_before_anything_is_saved(om, options, error, fragment):
    store(om, track=False)
    with pytest.raises(error, match=fragment):
        om.runtime.experiment("prod").track(MODEL, **options)
    assert trackers(om, MODEL) == []


def test_bad_windows_and_names(om):
    store(om)
    model = om.runtime.model(MODEL)
    with pytest.raises(InvalidQuery, match="not a time"):
        model.drift(since="a while")
    with pytest.raises(InvalidQuery, match="must be before until"):
        model.drift(since="2026-01-02", until="2026-01-01")
    with pytest.raises(InvalidQuery, match="name alone"):
        om.runtime.model(f"{MODEL}@latest").drift()


def test_a_window_over_the_bound_reads_its_newest_events(om, monkeypatch):
    store(om)
    predict(om, traffic(300, seed=1, shift=3.0))
    predict(om, traffic(200, seed=2))
    monkeypatch.setattr("omops.monitoring._events.MAX_EVENTS", 2)

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)

    assert report.truncated and "newest" in report.message
    assert report.predictions == 2 and report.rows == 200 and not report.drifted
    monkeypatch.setattr("omops.monitoring._events.MAX_EVENTS", 10)
    monkeypatch.setattr("omops.monitoring._events.MAX_BYTES", 1)  # one event at least
    assert om.runtime.model(MODEL).drift(since="1h", alert=False).predictions == 1


def test_a_feature_the_reference_has_no_values_of_is_not_judged(om):
    store(om, track=False)
    empty = training().assign(b=np.nan)
    om.datasets.put(empty, "empty_b", append=False)
    om.runtime.experiment("prod").track(MODEL, reference="empty_b")
    predict(om, traffic(300))

    b = features(om.runtime.model(MODEL).drift(since="1h", alert=False))["b"]
    assert (b.rows, b.reference_rows, b.note, b.drifted) == (
        300,
        0,
        "no values in the reference",
        False,
    )


def test_predictions_carry_latency_and_failures_their_error(om):
    store(om)
    predict(om, traffic(20))
    with pytest.raises(InvalidData):
        perform(om, MODEL, "predict", traffic(5).drop(columns="c"))  # a missing column

    logged = om.runtime.experiment("prod").data(event="predict")["value"].tolist()

    ok, failed = logged
    assert ok["status"] == "ok" and ok["latency_ms"] > 0 and ok["input"]["rows"] == 20
    assert failed["status"] == "error" and failed["latency_ms"] > 0
    assert failed["error"]["type"] == "InvalidData" and "c" in failed["error"]["message"]
    assert failed["revision"] == om.models.metadata(MODEL).revision
    report = om.runtime.model(MODEL).drift(since="1h", alert=False)
    assert (report.predictions, report.errors, report.error_rate) == (2, 1, 0.5)


def test_large_inputs_count_by_their_spread_sample(om):
    store(om)
    big = traffic(1000, seed=3)
    big.loc[big.index[500:], "a"] += 10.0  # the second half moved: the head alone would miss it
    perform(om, MODEL, "predict", big)

    sample = om.runtime.experiment("prod").data(event="predict")["value"].iloc[0]["input"]["sample"]
    assert sample["index"] == np.linspace(0, 999, 10).round().astype(int).tolist()
    report = om.runtime.model(MODEL).drift(since="1h", alert=False)
    assert report.rows == 10
    assert features(report)["a"].statistic >= 0.5


def test_several_experiments_the_one_with_a_reference_is_read(om):
    store(om, track=False)
    om.runtime.experiment("audit").track(MODEL)
    om.runtime.experiment("prod").track(MODEL, reference=REFERENCE)
    predict(om, traffic(300, shift=1.0))

    report = om.runtime.model(MODEL).drift(since="1h", alert=False)
    assert report.experiment == "prod" and report.drifted
    with pytest.raises(InvalidQuery, match="no reference"):
        om.runtime.model(MODEL).drift(experiment="audit")
    with pytest.raises(NotFound, match="not tracked by experiment 'other'"):
        om.runtime.model(MODEL).drift(experiment="other")


def test_module_function_and_proxy_agree(om):
    store(om)
    predict(om, traffic(300, shift=1.0))
    by_proxy = om.runtime.model(MODEL).drift(since="1h", alert=False).to_dict()
    direct = drift(om, MODEL, since="1h", alert=False).to_dict()
    for body in (by_proxy, direct):
        body.pop("since"), body.pop("until")
    assert by_proxy == direct

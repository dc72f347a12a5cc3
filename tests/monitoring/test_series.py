"""``monitor``: predictions, errors, latency and drift per feature over time."""

from __future__ import annotations

import datetime as dt

import pytest

from omops.errors import InvalidData, InvalidQuery, NotFound
from omops.monitoring import monitor
from omops.monitoring.series import MAX_BUCKETS
from omops.runtime.actions import perform

from .support import MODEL, age, predict, store, traffic


def test_predictions_errors_and_latency_per_minute(om):
    store(om)
    predict(om, traffic(300))  # 3 predictions
    with pytest.raises(InvalidData):
        perform(om, MODEL, "predict", traffic(5).drop(columns="c"))

    found = monitor(om, MODEL, since="10m", bucket="1m").to_dict()

    assert found["model"] == MODEL and found["experiment"] == "prod"
    assert (found["predictions"], found["errors"], found["bucket"]) == (4, 1, 60.0)
    series = found["series"]
    assert len(series) in (10, 11)  # whole minutes from the one 'since' falls in
    times = [dt.datetime.fromisoformat(p["t"]) for p in series]
    assert all(t.second == 0 and t.microsecond == 0 for t in times)
    assert times == sorted(times) and times[0] <= dt.datetime.fromisoformat(found["since"])
    assert sum(p["predictions"] for p in series) == 4
    assert sum(p["errors"] for p in series) == 1
    busy = [p for p in series if p["predictions"]]
    for point in busy:
        assert 0 < point["p50_ms"] <= point["p95_ms"] <= point["p99_ms"]
    idle = [p for p in series if not p["predictions"]]
    assert idle and all(p["p50_ms"] is None and p["errors"] == 0 for p in idle)


def test_drift_per_feature_over_time(om):
    store(om)
    predict(om, traffic(300, seed=1))
    age(om, 2 * 3600)  # three hours ago (aged again below): as in training
    predict(om, traffic(300, seed=2, shift=1.5))
    age(om, 3600)  # an hour ago: a moved
    predict(om, traffic(300, seed=3, shift=1.5))  # now: still moved

    found = monitor(om, MODEL, since="4h", bucket="15m", drift_bucket="1h").to_dict()

    assert found["drift_bucket"] == 3600.0 and found["reference"]["name"] == "train_X"
    by_feature: dict[str, list] = {}
    for point in found["drift_series"]:
        by_feature.setdefault(point["feature"], []).append(point)
    assert set(by_feature) == {"a", "b", "c"}
    a = by_feature["a"]
    assert [p["rows"] for p in a] == [300, 300, 300]
    assert [p["drifted"] for p in a] == [False, True, True]
    assert a[0]["psi"] < 0.1 < 0.5 < a[1]["psi"]
    assert not any(p["drifted"] for p in by_feature["b"] + by_feature["c"])
    times = [p["t"] for p in a]
    assert times == sorted(times) and len(set(times)) == 3


def test_the_drift_bucket_is_chosen_from_the_window(om):
    store(om)
    predict(om, traffic(100))
    assert monitor(om, MODEL, since="1h").drift_bucket == 300.0
    assert monitor(om, MODEL, since="1d", bucket="5m").drift_bucket == 3600.0
    assert monitor(om, MODEL, since="10m", bucket="5m").drift_bucket == 300.0


def test_without_a_reference_only_the_traffic(om):
    store(om, track=False)
    om.runtime.experiment("prod").track(MODEL)
    predict(om, traffic(100))
    found = monitor(om, MODEL, since="5m").to_dict()
    assert found["predictions"] == 1 and found["drift_series"] == []
    assert found["reference"] is None and "no reference" in found["message"]


def test_the_answer_is_bounded(om):
    store(om)
    with pytest.raises(InvalidQuery, match=f"more than {MAX_BUCKETS}"):
        monitor(om, MODEL, since="2d", bucket="1m")
    with pytest.raises(InvalidQuery, match="drift_bucket"):
        monitor(om, MODEL, since="2d", bucket="1h", drift_bucket="1m")
    with pytest.raises(InvalidQuery, match="not a duration"):
        monitor(om, MODEL, bucket="often")
    with pytest.raises(NotFound, match="not tracked"):
        om.models.put(om.models.get(MODEL), "untracked")
        monitor(om, "untracked")

"""Alerts: logged as events, POSTed to a real HTTP receiver on loopback, never in a prediction's way."""

from __future__ import annotations

import logging
import time

import pytest
from cryptography.fernet import Fernet

from omops.monitoring import check, deliver
from omops.omega import Omega
from omops.runtime.actions import perform

from .support import MODEL, Receiver, free_port, predict, store, traffic


def alerts(om: Omega) -> list[dict]:
    return om.runtime.experiment("prod").data(event="alert", run="all")["value"].tolist()


def test_drift_logs_an_alert_and_posts_it(om):
    with Receiver() as receiver:
        store(om, webhook=receiver.url)
        predict(om, traffic(300, shift=1.0))

        report = om.runtime.model(MODEL).drift(since="1h")

    assert [a["type"] for a in report.alerts] == ["drift"]
    (body,) = receiver.bodies
    assert body["source"] == "omops" and body["bucket"] == om.bucket
    assert body["alert"]["model"] == MODEL and body["alert"]["features"] == ["a"]
    assert body["alert"]["details"][0]["name"] == "a" and body["alert"]["details"][0]["psi"] > 0.5
    assert receiver.headers[0]["Content-Type"] == "application/json"
    (logged,) = alerts(om)
    assert logged["type"] == "drift" and logged["features"] == ["a"]
    assert logged["webhook"]["delivered"] is True and logged["webhook"]["status"] == 200
    # the token in the webhook's path is never logged
    assert logged["webhook"]["url"].endswith("/***") and "s3cret" not in str(logged)


def test_the_same_alert_is_not_repeated_within_alert_every(om):
    with Receiver() as receiver:
        store(om, webhook=receiver.url)
        predict(om, traffic(300, shift=1.0))
        model = om.runtime.model(MODEL)

        first, again = model.drift(since="1h"), model.drift(since="1h")
        mixed = traffic(300, seed=5, shift=1.0)
        mixed["c"] = "new"
        predict(om, mixed)
        other = model.drift(since="1h")  # a different set of features: alerted
        om.runtime.experiment("prod").track(MODEL, alert_every="1s")
        time.sleep(1.1)
        later = model.drift(since="1h")

    assert len(first.alerts) == 1 and again.alerts == []
    assert [a["features"] for a in other.alerts] == [["a", "c"]]
    assert len(later.alerts) == 1
    assert len(receiver.bodies) == 3 and len(alerts(om)) == 3


def test_a_receiver_that_is_down_is_logged_not_raised(om, caplog):
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    store(om, webhook=url)
    predict(om, traffic(300, shift=1.0))

    with caplog.at_level(logging.WARNING, logger="omops.monitoring"):
        report = om.runtime.model(MODEL).drift(since="1h")

    (alert,) = report.alerts
    assert (
        alert["webhook"]["delivered"] is False and "Connection refused" in alert["webhook"]["error"]
    )
    assert alerts(om)[0]["webhook"]["delivered"] is False
    assert "could not deliver an alert" in caplog.text


def test_a_webhook_token_can_be_a_secret(om, monkeypatch):
    monkeypatch.setenv("OMOPS_SECRET_KEY", Fernet.generate_key().decode())
    om = Omega(catalog=om.catalog, blobs=om.blobs)  # settings read again: the key
    with Receiver() as receiver:
        template = receiver.url.replace("s3cret-token", "{hook_token}")
        store(om, webhook=template)
        predict(om, traffic(300, shift=1.0))
        missing = om.runtime.model(MODEL).drift(since="1h").alerts
        om.secrets.put("hook_token", "s3cret-token")
        om.runtime.experiment("prod").track(MODEL, alert_every="1s")
        time.sleep(1.1)
        delivered = om.runtime.model(MODEL).drift(since="1h").alerts

    assert missing[0]["webhook"]["delivered"] is False
    assert "{hook_token} has no value" in missing[0]["webhook"]["error"]
    assert delivered[0]["webhook"]["delivered"] is True
    assert receiver.paths == ["/hooks/s3cret-token"]  # filled at delivery only
    configured = om.runtime.experiment("prod").data(event="monitor", run="all")["value"]
    assert all("s3cret" not in str(value) for value in configured)


def test_a_receiver_answering_an_error_is_noted():
    with Receiver(status=500) as receiver:
        outcome = deliver(receiver.url, {"alert": {"type": "drift"}})
    assert outcome == {
        "url": receiver.url.split("/hooks")[0] + "/***",
        "delivered": False,
        "status": 500,
        "error": "HTTP 500 Internal Server Error",
    }


def test_a_slow_receiver_times_out():
    with Receiver(delay=3.0) as receiver:
        started = time.monotonic()
        outcome = deliver(receiver.url, {"alert": {}}, timeout=0.5)
        elapsed = time.monotonic() - started
    assert outcome["delivered"] is False and "timed out" in outcome["error"]
    assert elapsed < 2.0


def test_a_webhook_never_slows_a_prediction(om):
    """Predictions never call the webhook: a hanging receiver costs them nothing."""
    with Receiver(delay=10.0) as receiver:
        store(om, webhook=receiver.url)
        started = time.monotonic()
        for _ in range(3):
            perform(om, MODEL, "predict", traffic(100, shift=3.0))
        elapsed = time.monotonic() - started
        assert receiver.bodies == []
    assert elapsed < 5.0


def test_a_high_error_rate_alerts(om):
    with Receiver() as receiver:
        store(om, webhook=receiver.url, thresholds={"min_rows": 4, "error_rate": 0.2})
        predict(om, traffic(100))
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017 (any failure counts)
                perform(om, MODEL, "predict", traffic(5).drop(columns="c"))

        report = om.runtime.model(MODEL).drift(since="1h")

    assert (report.predictions, report.errors) == (4, 3)
    (alert,) = [a for a in report.alerts if a["type"] == "error_rate"]
    assert alert["error_rate"] == 0.75 and alert["threshold"] == 0.2
    assert "3 of 4 predictions failed" in alert["message"]
    assert [b["alert"]["type"] for b in receiver.bodies] == ["error_rate"]


@pytest.mark.parametrize("where", ["environment", "config.toml"])
def test_the_webhook_setting_serves_models_without_their_own(where, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    with Receiver() as receiver:
        if where == "environment":
            monkeypatch.setenv("OMOPS_HOME", str(home))
            monkeypatch.setenv("OMOPS_MONITOR_WEBHOOK", receiver.url)
            om = Omega()
        else:
            (home / "config.toml").write_text(f'monitor_webhook = "{receiver.url}"\n')
            om = Omega(home=home)
        assert "s3cret" not in repr(om.settings)
        store(om)
        predict(om, traffic(300, shift=1.0))
        om.runtime.model(MODEL).drift(since="1h")
        om.close()
    assert [b["alert"]["features"] for b in receiver.bodies] == [["a"]]


def test_check_covers_every_tracked_model(om):
    with Receiver() as receiver:
        store(om, webhook=receiver.url)
        om.models.put(om.models.get(MODEL), "quiet")
        om.models.put(om.models.get(MODEL), "plain")
        om.runtime.experiment("prod").track("quiet", reference="train_X")
        om.runtime.experiment("prod").track("plain")  # no reference: errors only
        predict(om, traffic(300, shift=1.0))
        predict(om, traffic(300), model="quiet")
        predict(om, traffic(50), model="plain")

        results = {r["model"]: r for r in check(om, since="1h")}

        assert receiver.bodies[0]["alert"]["model"] == MODEL and len(receiver.bodies) == 1
    assert set(results) == {MODEL, "quiet", "plain"}
    assert results[MODEL]["drifted"] is True and results[MODEL]["features"] == ["a"]
    assert len(results[MODEL]["alerts"]) == 1
    assert results["quiet"]["drifted"] is False and results["quiet"]["alerts"] == []
    assert results["plain"]["drifted"] is None and results["plain"]["predictions"] == 1
    # one model that cannot be checked does not stop the others
    om.datasets.drop("train_X")
    again = {r["model"]: r for r in check(om, [MODEL, "plain"], since="1h")}
    assert "train_X" in again[MODEL]["error"] and again["plain"]["predictions"] == 1

"""``om monitor drift|stats|check``, in-process through typer's CliRunner (the default Omega)."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.cli.app import app

from .support import MODEL, Receiver, predict, store, traffic


def om(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def drifted() -> omops.Omega:
    instance = omops.get_omega()
    store(instance)
    predict(instance, traffic(300, shift=1.0))
    return instance


def test_drift_table(drifted):
    result = om("monitor", "drift", MODEL, "--since", "1h")

    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert {"a", "b", "c"} <= set(rows)
    assert "yes" in rows["a"] and "ks" in rows["a"] and "yes" not in rows["b"]
    assert "chi2" in rows["c"]
    assert "drifted: a" in result.stderr and "alert: model 'm': input drift in a" in result.stderr


@pytest.mark.parametrize("flags", [["-o", "json"], ["--output", "json"], ["--json"]])
def test_drift_json(drifted, flags):
    result = om("monitor", "drift", MODEL, "--no-alert", *flags)
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.stdout)
    assert body["drifted"] is True and body["rows"] == 300 and body["alerts"] == []
    assert [f["name"] for f in body["features"] if f["drifted"]] == ["a"]


def test_drift_with_another_reference_and_window(drifted):
    drifted.datasets.put(traffic(2000, seed=9, shift=1.0), "shifted_X", append=False)
    result = om("monitor", "drift", MODEL, "-r", "shifted_X", "--since", "2h", "--json")
    body = orjson.loads(result.stdout)
    assert body["reference"]["name"] == "shifted_X" and body["drifted"] is False
    empty = om("monitor", "drift", MODEL, "--since", "2000-01-01", "--until", "2000-01-02")
    assert empty.exit_code == 0 and "no tracked predictions" in empty.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["monitor", "drift", MODEL, "--since", "soon"], "is not a time"),
        (["monitor", "drift", "nope"], "does not exist"),
        (["monitor", "drift", MODEL, "-r", "missing"], "missing"),
        (["monitor", "stats", MODEL, "--since", "3d"], "buckets"),
    ],
)
def test_errors_are_one_line_and_exit_1(drifted, args, fragment):
    result = om(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and fragment in result.stderr
    assert "Traceback" not in result.output


def test_bad_output_is_a_usage_error(drifted):
    assert om("monitor", "drift", MODEL, "-o", "yaml").exit_code == 2


def test_stats(drifted):
    table = om("monitor", "stats", MODEL, "--since", "10m")
    assert table.exit_code == 0, table.output
    assert "3 predictions, 0 errors" in table.stdout
    assert any(line.count("│") > 5 and " 3 " in line for line in table.stdout.splitlines())

    body = orjson.loads(om("monitor", "stats", MODEL, "-w", "5m", "--json").stdout)
    assert body["bucket"] == 300.0 and sum(p["predictions"] for p in body["series"]) == 3
    assert {p["feature"] for p in body["drift_series"]} == {"a", "b", "c"}


def test_check_alerts_and_reports(drifted):
    with Receiver() as receiver:
        drifted.runtime.experiment("prod").track(MODEL, webhook=receiver.url)
        result = om("monitor", "check", "--json")
    assert result.exit_code == 0, result.output
    (item,) = orjson.loads(result.stdout)
    assert item["model"] == MODEL and item["features"] == ["a"] and len(item["alerts"]) == 1
    assert [b["alert"]["type"] for b in receiver.bodies] == ["drift"]

    table = om("monitor", "check")
    assert table.exit_code == 0 and MODEL in table.stdout  # the alert is not repeated
    assert drifted.runtime.experiment("prod").data(event="alert", run="all").shape[0] == 1


def test_check_exits_1_when_a_model_cannot_be_checked(drifted):
    drifted.datasets.drop("train_X")
    result = om("monitor", "check")
    assert result.exit_code == 1 and "train_X" in result.stdout

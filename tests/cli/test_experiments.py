"""``om experiments list|show``, in-process through typer's CliRunner."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.cli.app import app


def om(*args: str) -> Result:
    """Run ``om ARGS`` in-process, wide enough that tables do not truncate."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def logged() -> None:
    """Experiment ``myexp`` with two runs, ``other`` with one, ``dev/elsewhere`` in bucket dev."""
    runtime = omops.get_omega().runtime
    for run in (1, 2):
        with runtime.experiment("myexp") as exp:
            exp.log_metric("accuracy", run / 10, step=run)
            exp.log_param("C", {"run": run})
    with runtime.experiment("other") as exp:
        exp.log_metric("loss", 0.5)
    omops.get_omega()["dev"].runtime.experiment("elsewhere").log_param("p", 1)


def test_list_shows_experiments_with_runs_and_events(logged):
    result = om("experiments", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "experiment" in line)
    for column in ("experiment", "runs", "events", "created"):
        assert column in header
    myexp = next(line for line in lines if "myexp" in line).split("│")
    assert [cell.strip() for cell in myexp[1:4]] == ["myexp", "2", "10"]
    assert any("other" in line for line in lines)
    assert "elsewhere" not in result.stdout


def test_list_json_and_bucket(logged):
    listed = orjson.loads(om("experiments", "list", "--json").stdout)
    assert [(x["name"], x["runs"], x["events"]) for x in listed] == [
        ("myexp", 2, 10),
        ("other", 1, 4),
    ]
    created = dt.datetime.fromisoformat(listed[0]["created"])
    assert created.tzinfo is not None
    dev = orjson.loads(om("experiments", "list", "--bucket", "dev", "--json").stdout)
    assert [x["name"] for x in dev] == ["elsewhere"]


def test_list_without_experiments_says_how_to_start():
    result = om("experiments", "list")
    assert result.exit_code == 0
    assert "no experiments yet" in result.stderr


def test_show_prints_the_latest_run_as_a_table(logged):
    result = om("experiments", "show", "myexp")

    assert result.exit_code == 0, result.output
    assert "experiment myexp" in result.stdout
    for column in ("run", "step", "dt", "event", "key", "value"):
        assert column in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.split("│")[1:-1]] for row in rows]
    assert [c[3] for c in cells] == ["start", "system", "metric", "param", "stop"]
    assert {c[0] for c in cells} == {"2"}
    metric = cells[2]
    assert metric[1] == "2" and metric[4] == "accuracy" and metric[5] == "0.2"
    assert cells[3][5] == '{"run":2}'
    assert dt.datetime.fromisoformat(metric[2]).tzinfo is not None


def test_show_filters_by_event_key_and_run(logged):
    result = om("experiments", "show", "myexp", "--event", "metric", "--run", "all")
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all("accuracy" in row for row in rows)

    first = om("experiments", "show", "myexp", "-e", "metric", "-e", "param", "--run", "1")
    rows = [line for line in first.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all(row.split("│")[1].strip() == "1" for row in rows)

    keyed = om("experiments", "show", "myexp", "--key", "C", "--run", "all", "--json")
    assert [r["value"] for r in orjson.loads(keyed.stdout)] == [{"run": 1}, {"run": 2}]


def test_show_json_records(logged):
    result = om("experiments", "show", "myexp", "--json")

    records = orjson.loads(result.stdout)
    assert [r["event"] for r in records] == ["start", "system", "metric", "param", "stop"]
    assert set(records[0]) == {
        "experiment",
        "run",
        "step",
        "dt",
        "event",
        "key",
        "value",
        "node",
        "user",
    }
    assert records[0]["step"] is None and records[0]["key"] is None
    assert records[2] == {**records[2], "run": 2, "step": 2, "key": "accuracy", "value": 0.2}
    assert dt.datetime.fromisoformat(records[2]["dt"]).tzinfo is not None
    assert records[1]["value"]["python"]["version"]


def test_show_limit_keeps_the_last_rows_and_says_so(logged):
    result = om("experiments", "show", "myexp", "--run", "all", "--limit", "3")

    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[4].strip() for row in rows] == ["metric", "param", "stop"]
    assert "showing the last 3 of 10 events" in result.stderr


def test_show_a_run_without_events_says_so(logged):
    result = om("experiments", "show", "myexp", "--run", "9")
    assert result.exit_code == 0
    assert "no events in experiment 'myexp' for run='9'" in result.stderr


def test_show_unknown_experiment_or_bad_run_is_one_error_line(logged):
    missing = om("experiments", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: experiment 'nope' does not exist")
    assert "Traceback" not in missing.output
    assert om("experiments", "list").stdout.count("nope") == 0  # show created nothing

    bad = om("experiments", "show", "myexp", "--run", "first")
    assert bad.exit_code == 1
    assert "run must be 'all', 'latest', a run number" in bad.stderr


def test_help_lists_the_commands():
    result = om("experiments", "--help")
    assert result.exit_code == 0
    assert "list" in result.stdout and "show" in result.stdout
    assert "om experiments show myexp" in om("experiments", "show", "--help").stdout

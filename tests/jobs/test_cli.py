"""``om jobs`` and ``om runtime scheduler``, in-process and as the real executable."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import orjson
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.catalog._tables import schedules
from omops.cli.app import app

from .support import notebook

OM = Path(sys.executable).parent / "om"


def om(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def ok(*args: str) -> Result:
    result = om(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def notebook_file(tmp_path: Path) -> Path:
    path = tmp_path / "analysis.ipynb"
    nbformat.write(notebook("print('region', region, job)", parameters="region = 'us'"), str(path))
    return path


def test_put_run_map_results_get_export_drop(notebook_file: Path, tmp_path: Path) -> None:
    assert "stored jobs 'myjob'" in ok("jobs", "put", str(notebook_file), "myjob").output
    ran = ok("jobs", "run", "myjob", "-p", "region=eu", "--json")
    record = orjson.loads(ran.stdout)
    assert record["status"] == "ok" and record["parameters"] == {"region": "eu"}
    line = ok("jobs", "run", "myjob").stdout
    assert "job 'myjob' ok in" in line and "results/myjob_" in line
    mapped = orjson.loads(ok("jobs", "map", "myjob", "--range", "3", "--json").stdout)
    assert [r["parameters"] for r in mapped] == [{"param": 0}, {"param": 1}, {"param": 2}]
    table = ok("jobs", "map", "myjob", "a", "2").stdout
    assert "results/myjob_" in table
    results = orjson.loads(ok("jobs", "results", "myjob", "--json").stdout)
    assert len(results) == 7 and all(r["status"] == "ok" for r in results)
    listed = orjson.loads(ok("jobs", "list", "--json").stdout)
    assert [row["name"] for row in listed] == ["myjob"]
    assert len(orjson.loads(ok("jobs", "list", "--results", "--json").stdout)) == 8
    out = tmp_path / "out.ipynb"
    ok("jobs", "get", results[0]["result"], "-o", str(out))
    assert "region eu" in "".join(
        o.get("text", "") for c in nbformat.read(str(out), 4).cells for o in c.get("outputs", [])
    )
    ok("jobs", "export", "myjob", "-o", str(tmp_path / "report.html"))
    assert "<html" in (tmp_path / "report.html").read_text().lower()
    assert (
        "print('region', region, job)"
        in ok("jobs", "export", "myjob", "--format", "py", "-o", "-").stdout
    )
    assert "dropped jobs 'myjob'" in ok("jobs", "drop", "myjob").output


def test_failures_are_one_error_line(notebook_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    nbformat.write(notebook("1 / 0"), str(bad))
    ok("jobs", "put", str(bad), "bad")
    failed = om("jobs", "run", "bad")
    assert failed.exit_code == 1
    assert failed.stderr.strip().startswith("error: ZeroDivisionError: job 'bad' failed in cell 1")
    assert "Traceback" not in failed.output
    missing = om("jobs", "run", "nope")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    script = tmp_path / "x.py"
    script.write_text("print(1)")
    assert om("jobs", "put", str(script), "x").exit_code == 2
    assert om("jobs", "map", "bad").exit_code == 2  # no items
    assert om("jobs", "export", "bad", "-o", str(tmp_path / "x.pdf")).exit_code == 1


def test_schedule_show_and_drop(notebook_file: Path) -> None:
    ok("jobs", "put", str(notebook_file), "nightly")
    set_ = ok("jobs", "schedule", "nightly", "weekdays at 06:00", "-p", "region=eu")
    assert "cron '0 6 * * MON-FRI'" in set_.stdout
    shown = orjson.loads(ok("jobs", "schedule", "nightly", "--json").stdout)
    assert shown["parameters"] == {"region": "eu"} and shown["run_at"] == "weekdays at 06:00"
    assert "weekdays at 06:00" in ok("jobs", "list").stdout
    bad = om("jobs", "schedule", "nightly", "now and then")
    assert bad.exit_code == 1 and "cannot tell when" in bad.stderr
    ok("jobs", "schedule", "nightly", "--drop")
    gone = om("jobs", "schedule", "nightly")
    assert gone.exit_code == 1 and "has no schedule" in gone.stderr


def test_the_scheduler_command_fires_what_is_due(notebook_file: Path) -> None:
    ok("jobs", "put", str(notebook_file), "due")
    ok("jobs", "schedule", "due", "every 5 minutes")
    catalog = omops.get_omega().catalog
    with catalog.write_transaction() as conn:
        conn.execute(
            schedules.update().values(next_run=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
        )
    # The real executable, as deployed: it fires the missed run once and waits for it.
    done = subprocess.run(
        [str(OM), "runtime", "scheduler", "--once"],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("fired job 'due'") == 1
    [run] = omops.get_omega().jobs.results("due")
    assert run["status"] == "ok" and "scheduled" in run
    again = subprocess.run(
        [str(OM), "runtime", "scheduler", "--once"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "fired" not in again.stderr

"""``om scripts``: put (the seed's setup.py form too), list, run, drop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.cli.app import app

from .support import ECHO, RAISES, make_package

OM = Path(sys.prefix) / "bin" / "om"


def om(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **env})


def test_put_list_run_drop(tmp_path: Path):
    folder = make_package(tmp_path, "cli-script", ECHO, version="0.3")

    put = om("scripts", "put", str(folder / "pyproject.toml"), "myscript", "--tag", "v1")
    assert put.exit_code == 0, put.output
    assert "stored scripts 'myscript'" in put.stdout and "cli-script 0.3" in put.stdout
    listed = om("scripts", "list", "--json")
    assert [(r["name"], r["kind"], r["tags"]) for r in orjson.loads(listed.stdout)] == [
        ("myscript", "python.package", ["latest", "v1"])
    ]
    run = om("scripts", "run", "myscript@v1", "-p", "n=3", "-p", "region=EU", "--local")
    assert run.exit_code == 0, run.output
    record = orjson.loads(run.stdout)
    assert record["result"]["kwargs"] == {"n": 3, "region": "EU"}
    assert record["env"]["created"] is True and "hello from the script" in record["output"]
    meta = orjson.loads(om("scripts", "metadata", "myscript", "--json").stdout)
    assert meta["package"] == "cli-script" and meta["version"] == "0.3"
    assert om("scripts", "drop", "myscript").exit_code == 0
    assert omops.scripts.list() == []


def test_a_run_shows_progress_while_it_waits(tmp_path: Path):
    omops.scripts.put(make_package(tmp_path, "slowish", ECHO), "s")
    run = om("scripts", "run", "s", FORCE_COLOR="1", TTY_COMPATIBLE="1")
    assert run.exit_code == 0, run.output
    assert "running script s" in run.stderr  # the spinner's text, on stderr
    assert orjson.loads(run.stdout)["script"] == "s"


def test_failures_are_one_error_line(tmp_path: Path):
    omops.scripts.put(make_package(tmp_path, "failing", RAISES), "failing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "setup.py").write_text("raise SystemExit('no way 1234')\n")

    run = om("scripts", "run", "failing", "-p", "n=-1")
    put = om("scripts", "put", str(broken), "broken")
    missing = om("scripts", "run", "nope")

    for result, fragment in (
        (run, "ValueError: n must be positive, got -1"),
        (put, "no way 1234"),
        (missing, "nope"),
    ):
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: ") and fragment in result.stderr
        assert "Traceback (most recent call last)" not in result.stderr.splitlines()[0]


@pytest.mark.slow
def test_the_seeds_command_line_with_the_real_executable(tmp_path: Path):
    folder = make_package(tmp_path, "myscript", ECHO, layout="setup.py")
    env = {**os.environ, "COLUMNS": "200"}

    put = subprocess.run(
        [str(OM), "scripts", "put", str(folder / "setup.py"), "myscript"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    run = subprocess.run(
        [str(OM), "scripts", "run", "myscript", "-p", "n=3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )

    assert put.returncode == 0, put.stderr
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout)["result"]["kwargs"] == {"n": 3}

"""``om streams``: put, get, tail (as a consumer group), list, drop."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.cli.app import app

OM = Path(sys.prefix) / "bin" / "om"


def om(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})


def lines(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_put_a_record_an_array_or_ndjson_then_get() -> None:
    done = om("streams", "put", "readings", '{"sensor": 1, "v": 0.3}')
    assert done.exit_code == 0, done.output
    assert "appended 1 record(s) to stream 'readings' at offset 0" in done.stdout
    done = om("streams", "put", "readings", '[{"sensor": 2}, {"sensor": 3}]', "--json")
    assert orjson.loads(done.stdout) == {"stream": "readings", "first": 1, "count": 2, "next": 3}
    done = om("streams", "put", "readings", "-", stdin='{"sensor": 4}\n\n{"sensor": 5}\n')
    assert "at offsets 3-4" in done.stdout

    got = lines(om("streams", "get", "readings", "--since", "2", "--limit", "2"))
    assert [(r["offset"], r["record"]) for r in got] == [(2, {"sensor": 3}), (3, {"sensor": 4})]
    assert all(isinstance(r["appended"], float) for r in got)
    assert len(lines(om("streams", "get", "readings"))) == 5
    assert omops.streams.get("readings")["sensor"].tolist() == [1, 2, 3, 4, 5]

    listed = om("streams", "list", "--json")
    assert [(s["name"], s["records"]) for s in orjson.loads(listed.stdout)] == [("readings", 5)]
    assert "readings" in om("streams", "list").stdout
    assert "dropped stream 'readings'" in om("streams", "drop", "readings").stdout
    assert "did not exist" in om("streams", "drop", "readings", "--force").stdout


def test_errors_are_one_line() -> None:
    for args, stdin, fragment in (
        (("streams", "put", "s", "{oops"), None, "line 1 is not JSON"),
        (("streams", "put", "s", "-"), "  \n", "no records given"),
        (("streams", "get", "missing"), None, "stream 'missing' does not exist"),
        (("streams", "tail", "missing", "--timeout", "0"), None, "does not exist"),
        (("streams", "put", "../x", "{}"), None, "invalid name"),
    ):
        result = om(*args, stdin=stdin)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().startswith("error: ") and fragment in result.stderr
        assert "Traceback" not in result.output


def test_tail_as_a_group_commits_what_it_printed(tmp_path: Path) -> None:
    omops.streams.put([{"i": i} for i in range(5)], "jobs")
    env = {**os.environ, "COLUMNS": "200"}
    run = [str(OM), "streams", "tail", "jobs", "--group", "cli", "--size", "2", "--timeout", "0.3"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert [orjson.loads(x)["record"]["i"] for x in first.stdout.splitlines()] == [0, 1, 2, 3, 4]
    assert omops.streams.metadata("jobs").groups == {"cli": 5}
    omops.streams.put({"i": 5}, "jobs")
    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert [orjson.loads(x)["offset"] for x in again.stdout.splitlines()] == [5]
    # without a group it starts at the end: only what is appended while it follows
    follow = subprocess.Popen(
        [str(OM), "streams", "tail", "jobs", "--size", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()

    def produce() -> None:  # until the follower has started and printed something
        while not stop.wait(0.2):
            omops.streams.put({"i": "new"}, "jobs")

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        first = orjson.loads(follow.stdout.readline())
    finally:
        stop.set()
        producer.join()
        follow.kill()
        follow.communicate(timeout=60)
    assert first["offset"] >= 6 and first["record"] == {"i": "new"}


@pytest.mark.parametrize("name", ["a b", "x;rm"])
def test_hostile_names_are_refused(name: str) -> None:
    result = om("streams", "put", name, "{}")
    assert result.exit_code == 1 and "invalid name" in result.stderr

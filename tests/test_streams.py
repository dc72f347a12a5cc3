"""om.streams: records with catalog-assigned offsets, windows per consumer group.

Producers and consumers run as real processes on a shared catalog (SQLite
file, real PostgreSQL); a consumer is SIGKILLed mid-window and a new process
picks up from the group's last commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omops.errors import InvalidData, InvalidName, InvalidQuery, NotFound
from omops.omega import Omega


@pytest.fixture
def shared(catalog_url: str, tmp_path: Path) -> Omega:
    """An Omega on each backend whose catalog other processes share."""
    instance = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"), home=str(tmp_path))
    yield instance
    instance.close()


def env_of(om: Omega, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(tmp_path), OMOPS_CATALOG=om.catalog.url, OMOPS_BLOBS=om.blobs.url)
    return env


def start(code: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- put and get -------------------------------------------------------------------


def test_records_get_increasing_offsets_and_read_back(om):
    assert om.streams.put({"sensor": 1, "v": 0.5}, "readings") == {
        "stream": "readings",
        "first": 0,
        "count": 1,
        "next": 1,
    }
    appended = om.streams.put([{"sensor": 2, "v": 1.5}, {"sensor": 3, "v": None}], "readings")
    assert list(appended.offsets) == [1, 2]
    frame = pd.DataFrame({"sensor": [4, 5], "v": [np.nan, 2.5]}, index=[10, 20])
    assert list(om.streams.put(frame, "readings").offsets) == [3, 4]

    got = om.streams.get("readings")
    assert list(got.index) == [0, 1, 2, 3, 4] and got.index.name == "offset"
    assert got["sensor"].tolist() == [1, 2, 3, 4, 5]
    assert got["v"].tolist()[:2] == [0.5, 1.5] and got["v"].isna().tolist()[2:4] == [True, True]
    assert list(om.streams.get("readings", since=3).index) == [3, 4]
    assert list(om.streams.get("readings", since=1, limit=2).index) == [1, 2]
    assert om.streams.get("readings", since=5).empty
    assert om.streams.metadata("readings").next_offset == 5


def test_any_json_value_is_a_record_and_timestamps_become_iso_text(om):
    om.streams.put(["text", 3, [1, 2], None], "mixed")
    assert om.streams.get("mixed")["value"].tolist() == ["text", 3, [1, 2], None]
    stamps = pd.DataFrame({"t": pd.to_datetime(["2024-03-01T12:00", None], utc=True)})
    om.streams.put(stamps, "times")
    times = om.streams.get("times")["t"]
    assert times[0] == "2024-03-01T12:00:00+00:00" and pd.isna(times[1])
    record = om.streams.read("times")[0]
    assert (record.offset, json.loads(record.record)) == (0, {"t": "2024-03-01T12:00:00+00:00"})


def test_an_empty_list_makes_an_empty_stream(om):
    assert om.streams.put([], "empty")["count"] == 0
    assert om.streams.exists("empty") and om.streams.get("empty").empty
    assert om.streams.list() == ["empty"]


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        ([{"a": 1}, {"b": object()}], "must be JSON"),
        ([{"a": 1}, {1: "int key"}], "must be JSON"),
        (pd.DataFrame({0: [1]}), "text column names"),
        (pd.Series([1, 2]), "to_frame()"),
    ],
)
def test_a_bad_record_appends_nothing(om, records, fragment):
    om.streams.put({"a": 0}, "s")
    with pytest.raises(InvalidData, match=fragment):
        om.streams.put(records, "s")
    assert om.streams.metadata("s").next_offset == 1
    assert om.streams.put({"a": 2}, "s")["first"] == 1


def test_names_windows_and_verbs_that_do_not_apply(om):
    with pytest.raises(InvalidName):
        om.streams.put({"a": 1}, "../x")
    with pytest.raises(NotFound, match="om.streams.put"):
        om.streams.get("missing")
    with pytest.raises(NotFound):
        om.streams.getl("missing", group="g", size=1)
    om.streams.put({"a": 1}, "s")
    with pytest.raises(InvalidQuery, match="size=.*interval="):
        om.streams.getl("s", group="g")
    with pytest.raises(InvalidQuery, match="size must be"):
        om.streams.getl("s", group="g", size=0)
    with pytest.raises(InvalidName, match="consumer group"):
        om.streams.getl("s", group="a b", size=1)
    with pytest.raises(InvalidQuery, match="since"):
        om.streams.get("s", since=-1)
    with pytest.raises(InvalidData, match="takes no attributes"):
        om.streams.put({"a": 1}, "s", {"attr": 1})
    for verb in (
        lambda: om.streams.revisions("s"),
        lambda: om.streams.tag("s", "latest", "x"),
        lambda: om.streams.promote("s", om.datasets),
    ):
        with pytest.raises(InvalidData, match="streams have no revisions"):
            verb()
    assert om.streams.drop("s") is True
    assert not om.streams.exists("s") and om.streams.drop("s", force=True) is False
    with pytest.raises(NotFound):
        om.streams.drop("s")


def test_buckets_have_their_own_streams(om):
    om["a"].streams.put({"x": 1}, "s")
    om["b"].streams.put([{"x": 2}, {"x": 3}], "s")
    om["b"].streams.put([], "_internal")
    assert om["a"].streams.get("s")["x"].tolist() == [1]
    assert om["b"].streams.get("s")["x"].tolist() == [2, 3]
    assert om.streams.list() == []
    assert om["b"].streams.list() == ["s"] and om["b"].streams.list(hidden=True) == [
        "_internal",
        "s",
    ]
    om["a"].datasets.put({"k": 1}, "conf")
    # what the dashboard counts per bucket and store
    assert om.catalog.buckets() == {"a": {"datasets": 1, "streams": 1}, "b": {"streams": 1}}


# -- windows and groups --------------------------------------------------------------


def test_windows_commit_after_processing_and_groups_are_independent(om):
    om.streams.put([{"i": i} for i in range(7)], "s")
    seen = [w["i"].tolist() for w in om.streams.getl("s", group="a", size=3, timeout=0)]
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]
    assert om.streams.metadata("s").groups == {"a": 7}
    # Group b starts at 0; it breaks out during its second window: not committed.
    reader = om.streams.getl("s", group="b", size=2)
    assert next(reader)["i"].tolist() == [0, 1]
    assert next(reader)["i"].tolist() == [2, 3]
    reader.close()
    assert om.streams.metadata("s").groups == {"a": 7, "b": 2}
    again = om.streams.getl("s", group="b", size=2, timeout=0)
    assert next(again)["i"].tolist() == [2, 3]
    again.commit()
    assert om.streams.metadata("s").groups["b"] == 4
    # New records reach both groups.
    om.streams.put({"i": 7}, "s")
    assert [w["i"].tolist() for w in om.streams.getl("s", group="a", size=5, timeout=0)] == [[7]]
    assert [w["i"].tolist() for w in again] == [[4, 5], [6, 7]]


def test_interval_windows_hold_what_arrived(om):
    om.streams.put({"i": 0}, "s")
    reader = om.streams.getl("s", group="g", interval=0.2, timeout=1.0, poll=0.02)
    started = time.monotonic()
    first = next(reader)
    assert first["i"].tolist() == [0] and time.monotonic() - started >= 0.2
    om.streams.put([{"i": 1}, {"i": 2}], "s")
    assert next(reader)["i"].tolist() == [1, 2]
    with pytest.raises(StopIteration):  # a second without records: the end
        next(reader)
    assert om.streams.metadata("s").groups == {"g": 3}


def test_without_a_group_nothing_is_committed(om):
    om.streams.put([{"i": i} for i in range(4)], "s")
    windows = om.streams.getl("s", size=2, since=1, timeout=0)
    assert [w["i"].tolist() for w in windows] == [[1, 2], [3]]
    assert om.streams.metadata("s").groups == {}
    with pytest.raises(InvalidQuery, match="own position"):
        om.streams.getl("s", group="g", size=1, since=2)


# -- processes -----------------------------------------------------------------------

PRODUCER = """
import sys
import omops
producer, count = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()  # start together
n = 0
while n < count:  # singles and batches of up to 7, interleaved with the other producers
    batch = [{"producer": producer, "seq": n + i} for i in range(min(1 + n % 7, count - n))]
    omops.streams.put(batch[0] if len(batch) == 1 else batch, "events")
    n += len(batch)
print("done")
"""


def test_producers_in_four_processes_lose_nothing(shared, tmp_path):
    shared.streams.put([], "events")
    env, per_producer = env_of(shared, tmp_path), 150
    producers = [start(PRODUCER, env, f"p{i}", str(per_producer)) for i in range(4)]
    for proc in producers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    # A consumer reads while they write: offsets appear in order, so it misses nothing.
    consumed: list[int] = []
    reader = shared.streams.getl("events", group="live", size=1, interval=0.05, poll=0.01)
    deadline = time.monotonic() + 120
    while len(consumed) < 4 * per_producer and time.monotonic() < deadline:
        consumed += next(reader).index.tolist()
    reader.commit()
    for proc in producers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done", err
    records = shared.streams.get("events")
    assert list(records.index) == list(range(4 * per_producer))  # gapless, counted
    assert consumed == list(range(4 * per_producer))
    for producer, rows in records.groupby("producer"):
        assert rows["seq"].tolist() == list(range(per_producer)), producer  # each in order
    assert shared.streams.metadata("events").groups == {"live": 4 * per_producer}


CONSUMER = """
import os, sys, time
import omops
log, hang_at = sys.argv[1], int(sys.argv[2])
for window in omops.streams.getl("jobs", group="workers", size=10, timeout=2, poll=0.02):
    first = int(window.index[0])
    with open(log, "a") as out:
        out.write(f"start {first}\\n")
        out.flush()
    if first == hang_at:
        print("hanging", flush=True)
        time.sleep(600)  # killed here, mid-window
    with open(log, "a") as out:
        out.write(" ".join(map(str, window["n"].tolist())) + "\\n")
print("done", flush=True)
"""


def test_a_consumer_killed_mid_window_resumes_from_its_last_commit(shared, tmp_path):
    shared.streams.put([{"n": n} for n in range(50)], "jobs")
    env, log = env_of(shared, tmp_path), tmp_path / "log.txt"
    first = start(CONSUMER, env, str(log), "20")
    assert first.stdout.readline().strip() == "hanging"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    # Windows 0 and 10 were processed and committed; 20 was in hand.
    assert shared.streams.metadata("jobs").groups == {"workers": 20}

    second = start(CONSUMER, env, str(log), "-1")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0 and out.strip() == "done", err
    lines = log.read_text().splitlines()
    starts = [int(line.split()[1]) for line in lines if line.startswith("start")]
    assert starts == [0, 10, 20, 20, 30, 40]  # window 20 again, at least once
    done = [int(n) for line in lines if not line.startswith("start") for n in line.split()]
    assert done == list(range(50))  # each processed to the end exactly once here
    assert shared.streams.metadata("jobs").groups == {"workers": 50}

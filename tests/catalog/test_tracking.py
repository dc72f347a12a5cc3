"""The catalog side of tracking: experiments, runs, events, tracked models, the event writer.

Every test runs on SQLite and on PostgreSQL (``catalog`` fixture).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time

import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from omops.catalog.store import Catalog
from omops.catalog.tracking import (
    COLUMN_NAMES,
    EVENT_COLUMNS,
    EventWriter,
    Tracking,
    event_row,
)
from omops.errors import NotFound


@pytest.fixture
def catalog(catalog_url: str):
    instance = Catalog(catalog_url)
    yield instance
    instance.close()


@pytest.fixture
def tracking(catalog: Catalog) -> Tracking:
    return catalog.tracking


def metric(experiment_id: int, run: int, value: float, step: int | None = None) -> tuple:
    return event_row(experiment_id, run, "metric", "loss", value, step)


# -- experiments ---------------------------------------------------------------


def test_experiment_is_created_once_per_bucket_and_name(tracking: Tracking):
    first = tracking.experiment("default", "exp")
    again = tracking.experiment("default", "exp")
    other_bucket = tracking.experiment("dev", "exp")

    assert first == again
    assert other_bucket.id != first.id
    assert (first.bucket, first.name) == ("default", "exp")
    assert first.created.tzinfo is not None


def test_missing_experiment_without_create_is_not_found(tracking: Tracking):
    with pytest.raises(NotFound, match="experiment 'nope' does not exist in bucket 'default'"):
        tracking.experiment("default", "nope", create=False)
    assert tracking.list("default") == []


def test_list_counts_runs_and_events_per_bucket(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    tracking.experiment("default", "b")
    tracking.experiment("dev", "c")
    for _ in range(2):
        run = tracking.start_run(a, "simple")
        tracking.log([metric(a, run, 1.0), metric(a, run, 2.0)])

    listed = tracking.list("default")

    assert [(x["name"], x["runs"], x["events"]) for x in listed] == [("a", 2, 4), ("b", 0, 0)]
    assert [x["name"] for x in tracking.list("dev")] == ["c"]


def test_drop_removes_runs_events_and_tracking(tracking: Tracking):
    kept = tracking.experiment("default", "kept").id
    dropped = tracking.experiment("default", "dropped").id
    for experiment_id in (kept, dropped):
        run = tracking.start_run(experiment_id, "simple")
        tracking.log([metric(experiment_id, run, 1.0)])
        tracking.track("default", "model", experiment_id)

    tracking.drop(dropped)

    assert [x["name"] for x in tracking.list("default")] == ["kept"]
    assert tracking.runs(dropped) == [] and tracking.events(dropped) == []
    assert tracking.trackers("default", "model") == [(kept, "kept")]
    assert len(tracking.events(kept)) == 1


# -- runs ------------------------------------------------------------------------


def test_runs_are_numbered_per_experiment(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    b = tracking.experiment("default", "b").id
    assert tracking.latest_run(a) is None

    numbers = [tracking.start_run(a, "simple"), tracking.start_run(a, "profiling")]
    numbers.append(tracking.start_run(b, "simple"))

    assert numbers == [1, 2, 1]
    assert tracking.latest_run(a) == 2
    runs = tracking.runs(a)
    assert [(r["run"], r["provider"], r["stopped"]) for r in runs] == [
        (1, "simple", None),
        (2, "profiling", None),
    ]


def test_stop_run_records_the_time(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")

    tracking.stop_run(a, run)

    (info,) = tracking.runs(a)
    assert info["started"] <= info["stopped"] <= dt.datetime.now(dt.UTC)


# -- events ----------------------------------------------------------------------


def test_event_row_is_json_stamped_now_here(tracking: Tracking):
    import getpass
    import socket

    before = time.time()
    row = event_row(1, 2, "data", "k", {"a": np.float32(1.5), 3: dt.date(2024, 1, 2)}, 7)
    assert len(row) == len(EVENT_COLUMNS)
    experiment_id, run, step, stamp, event, key, value, node, user = row
    assert (experiment_id, run, step, event, key) == (1, 2, 7, "data", "k")
    assert before <= stamp <= time.time()
    assert orjson.loads(value) == {"a": 1.5, "3": "2024-01-02"}
    assert node == socket.gethostname() and user == getpass.getuser()
    assert event_row(1, 1, "start", None, None)[6] is None


def test_log_and_read_back_in_logging_order(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    rows = [metric(a, run, float(i), i) for i in range(5)]
    rows.append(event_row(a, run, "param", "C", {"x": [1, 2]}))

    tracking.log(rows)
    tracking.log([])  # nothing to do

    read = tracking.events(a)
    assert [r[1] for r in read] == [0, 1, 2, 3, 4, None]
    assert [orjson.loads(r[5]) for r in read] == [0.0, 1.0, 2.0, 3.0, 4.0, {"x": [1, 2]}]
    assert [r[2] for r in read] == [r[3] for r in rows]
    assert tracking.events(a, event="param")[0][4] == "C"


def test_columns_fold_every_column(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    tracking.log(
        [
            metric(a, run, 0.5, 3),
            event_row(a, run, "start", None, None),
            event_row(a, run, "data", 'q"uote', {"text": "ünï\n\"code'"}),
        ]
    )

    columns = tracking.columns(a)

    assert tuple(columns) == COLUMN_NAMES
    assert list(columns["run"]) == [1, 1, 1]
    assert list(columns["step"]) == [3, None, None]
    assert list(columns["event"]) == ["metric", "start", "data"]
    assert list(columns["key"]) == ["loss", None, 'q"uote']
    assert list(columns["value"]) == [0.5, None, {"text": "ünï\n\"code'"}]
    stamps = [r[2] for r in tracking.events(a)]
    micros = np.asarray(columns["dt"], dtype="int64")  # rounded to the microsecond
    assert np.abs(micros - np.asarray(stamps) * 1_000_000).max() <= 1
    raw = tracking.columns(a, raw=True)["value"]
    assert list(raw) == ["0.5", None, '{"text":"ünï\\n\\"code\'"}']


def test_columns_filter_by_run_event_key_and_time(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    other = tracking.experiment("default", "other").id
    r1, r2 = tracking.start_run(a, "simple"), tracking.start_run(a, "simple")
    tracking.log([metric(other, tracking.start_run(other, "simple"), 9.0)])
    tracking.log([metric(a, r1, 1.0), event_row(a, r1, "param", "C", 1)])
    time.sleep(0.01)
    cutoff = time.time()
    tracking.log([metric(a, r2, 2.0), event_row(a, r2, "metric", "acc", 0.9)])

    def values(**query):
        return list(tracking.columns(a, **query)["value"])

    assert values() == [1.0, 1, 2.0, 0.9]
    assert values(runs_=[r2]) == [2.0, 0.9]
    assert values(runs_=[]) == []
    assert values(event="param") == [1]
    assert values(event=["metric"], key=["loss", "acc"]) == [1.0, 2.0, 0.9]
    assert values(key="acc") == [0.9]
    assert values(since=cutoff) == [2.0, 0.9]


def test_columns_are_in_logging_order_when_runs_interleave(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    r1, r2 = tracking.start_run(a, "simple"), tracking.start_run(a, "simple")
    for i in range(6):
        tracking.log([metric(a, r1 if i % 2 else r2, float(i), i)])

    columns = tracking.columns(a)
    by_event = tracking.columns(a, event=["metric", "start"], key="loss")

    assert list(columns["step"]) == list(range(6))
    assert list(columns["run"]) == [2, 1, 2, 1, 2, 1]
    assert list(by_event["value"]) == [float(i) for i in range(6)]
    ids = np.asarray(columns["id"], dtype="int64")
    assert (np.diff(ids) > 0).all()


def test_columns_of_no_events_are_empty(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    columns = tracking.columns(a)
    assert {name: list(values) for name, values in columns.items()} == {
        name: [] for name in COLUMN_NAMES
    }


def _limited(path, limit: int) -> Catalog:
    """A SQLite catalog whose connections refuse strings longer than ``limit``."""
    catalog = Catalog(f"sqlite:///{path}")

    @sa.event.listens_for(catalog.engine(), "connect")
    def _small(dbapi_connection, _record):
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)

    catalog.engine().dispose()  # connections made before the listener go
    return catalog


def test_reads_split_a_result_the_database_finds_too_big(tmp_path):
    """SQLite refuses strings over SQLITE_LIMIT_LENGTH: columns() and texts() halve the ids."""
    path = tmp_path / "catalog.sqlite"
    unlimited = Catalog(f"sqlite:///{path}")
    a = unlimited.tracking.experiment("default", "a").id
    run = unlimited.tracking.start_run(a, "simple")
    unlimited.tracking.log([event_row(a, run, "data", "blob", "x" * 500, i) for i in range(40)])
    unlimited.close()
    catalog = _limited(path, 5_000)  # 40 values of 500 characters fold to 20,000
    try:
        columns = catalog.tracking.columns(a)
        raw = catalog.tracking.columns(a, raw=True, runs_=[run])
        texts = catalog.tracking.texts(a, event="data", key="blob")
    finally:
        catalog.close()
    assert list(columns["step"]) == list(range(40))
    assert list(columns["value"]) == ["x" * 500] * 40
    assert list(raw["value"]) == [f'"{"x" * 500}"'] * 40
    assert texts.text.split(b"\n") == [f'"{"x" * 500}"'.encode()] * 40
    assert len(texts.micros) == 40


def test_columns_report_one_event_larger_than_the_database_allows(tmp_path):
    path = tmp_path / "catalog.sqlite"
    unlimited = Catalog(f"sqlite:///{path}")
    a = unlimited.tracking.experiment("default", "a").id
    run = unlimited.tracking.start_run(a, "simple")
    unlimited.tracking.log([event_row(a, run, "data", "huge", "y" * 6_000)])
    unlimited.close()
    catalog = _limited(path, 5_000)
    try:
        with pytest.raises(sa.exc.DataError, match="too big"):
            catalog.tracking.columns(a)
    finally:
        catalog.close()


# -- tracked models ----------------------------------------------------------------


def test_track_is_idempotent_and_untrack_removes(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    b = tracking.experiment("default", "b").id

    tracking.track("default", "model", a)
    tracking.track("default", "model", a)
    tracking.track("default", "model", b)
    tracking.track("dev", "model", b)

    assert sorted(tracking.trackers("default", "model")) == [(a, "a"), (b, "b")]
    tracking.untrack("default", "model", a)
    assert tracking.trackers("default", "model") == [(b, "b")]
    assert tracking.trackers("default", "other") == []


# -- the write-behind writer -------------------------------------------------------


def test_writer_writes_in_the_background_and_flush_waits(catalog: Catalog):
    tracking = catalog.tracking
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    writer = EventWriter(catalog, interval=0.05, batch=100)

    for i in range(1_050):
        writer.put(metric(a, run, float(i), i))
    writer.flush()

    assert list(tracking.columns(a)["step"]) == list(range(1_050))


def test_writer_reports_a_failed_batch_and_goes_on(catalog: Catalog, caplog):
    tracking = catalog.tracking
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    writer = EventWriter(catalog, interval=0.05)

    with caplog.at_level(logging.ERROR, logger="omops.tracking"):
        writer.put(("not", "a", "valid", "row"))
        writer.flush()
        writer.put(metric(a, run, 1.0))
        writer.flush()

    assert "could not write 1 events" in caplog.text
    assert list(tracking.columns(a)["value"]) == [1.0]


# -- texts (what monitoring reads) ---------------------------------------------------


def test_texts_are_the_values_one_per_line_with_their_times(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    values = [{"n": i, "text": "line\nbreak ünï"} for i in range(3)]
    rows = [event_row(a, run, "predict", "m", value) for value in values]
    tracking.log([*rows, event_row(a, run, "predict", "other", 1), metric(a, run, 0.5)])

    found = tracking.texts(a, event="predict", key="m")

    lines = found.text.split(b"\n")
    assert [orjson.loads(line) for line in lines] == values  # JSON escapes the newline
    assert np.abs(found.micros - np.array([r[3] for r in rows]) * 1e6).max() <= 1
    assert found.truncated is False
    empty = tracking.texts(a, event="predict", key="nothing")
    assert (empty.text, len(empty.micros)) == (b"", 0)


def test_texts_window_and_limit(tracking: Tracking):
    a = tracking.experiment("default", "a").id
    run = tracking.start_run(a, "simple")
    stamps = [1000.0, 2000.0, 3000.0, 4000.0]
    tracking.log(
        [(a, run, None, t, "predict", "m", str(i), "n", "u") for i, t in enumerate(stamps)]
    )

    def lines(**query):
        found = tracking.texts(a, event="predict", key="m", **query)
        return [int(x) for x in found.text.split(b"\n")] if found.text else [], found.truncated

    assert lines(since=2000.0, until=4000.0) == ([1, 2], False)  # [since, until)
    assert lines(limit=2) == ([2, 3], True)  # the newest
    assert lines(limit=4) == ([0, 1, 2, 3], False)
    assert lines(since=2000.0, limit=2) == ([2, 3], True)
    assert lines(since=5000.0, limit=2) == ([], False)
    assert lines(max_bytes=2) == ([2, 3], True)  # values of one character each
    assert lines(max_bytes=0) == ([3], True)  # the newest at least
    assert lines(max_bytes=100) == ([0, 1, 2, 3], False)

"""Paged catalog reads for listings of any length (the dashboard), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from omops.catalog.tracking import SAMPLE_BLOCK
from omops.omega import Omega


def test_a_page_of_objects_and_the_count(om: Omega) -> None:
    for name in ("a/1", "a/2", "a/3", "b/1", "_temp/x", "results/a_1"):
        om.datasets.put({"n": name}, name)
    om["other"].datasets.put({"n": 1}, "elsewhere")
    catalog = om.catalog
    records, total = catalog.page(om.bucket, "datasets", offset=1, limit=2)
    assert [r.name for r in records] == ["a/2", "a/3"] and total == 5
    records, total = catalog.page(om.bucket, "datasets", prefix="a/", descending=True)
    assert [r.name for r in records] == ["a/3", "a/2", "a/1"] and total == 3
    records, total = catalog.page(om.bucket, "datasets", exclude="results/")
    assert [r.name for r in records] == ["a/1", "a/2", "a/3", "b/1"] and total == 4
    records, _ = catalog.page(om.bucket, "datasets", prefix="a%", hidden=True)
    assert records == []  # the prefix is text, not a pattern
    assert catalog.buckets() == {"default": {"datasets": 5}, "other": {"datasets": 1}}
    assert catalog.buckets(hidden=True)["default"] == {"datasets": 6}
    latest = catalog.latest_revisions([r.id for r in catalog.page(om.bucket, "datasets")[0]])
    assert {rev.revision for rev in latest.values()} == {
        om.datasets.metadata(n).revision for n in ("a/1", "a/2", "a/3", "b/1", "results/a_1")
    }


def test_recent_tasks_newest_first(om: Omega) -> None:
    log = om.catalog.task_log
    ids = [uuid.uuid4().hex for _ in range(5)]
    for i, task_id in enumerate(ids):
        log.submitted(task_id, bucket=om.bucket, task="omops.script" if i == 4 else "omops.model")
        log.finished(task_id, error={"type": "E", "message": "m"} if i % 2 else None)
    log.submitted(uuid.uuid4().hex, bucket="other", task="omops.model")
    records, total = log.recent(om.bucket, limit=2)
    assert [r.id for r in records] == ids[::-1][:2] and total == 5
    failed, total = log.recent(om.bucket, status="FAILURE")
    assert [r.id for r in failed] == [ids[3], ids[1]] and total == 2
    scripts, total = log.recent(om.bucket, task="omops.script")
    assert [r.id for r in scripts] == [ids[4]] and total == 1


def test_runs_events_and_samples_page_through_an_experiment(om: Omega) -> None:
    for _ in range(3):
        with om.runtime.experiment("big") as exp:
            exp.log_events(("metric", "loss" if i % 2 else "acc", float(i), i) for i in range(2000))
    tracking = om.catalog.tracking
    experiment_id = tracking.experiment(om.bucket, "big", create=False).id
    runs, total = tracking.run_page(experiment_id, offset=1, limit=1)
    assert [r["run"] for r in runs] == [2] and total == 3
    first = tracking.page(experiment_id, runs_=[2], event="metric", limit=150)
    second = tracking.page(experiment_id, runs_=[2], event="metric", after=first[-1][0], limit=150)
    assert [r[2] for r in first + second] == list(range(300))  # steps, in logging order
    whole, thinned = tracking.sample(experiment_id, 3, event="metric", limit=5000)
    assert not thinned and [r[2] for r in whole] == list(range(2000))
    some, thinned = tracking.sample(experiment_id, 3, event="metric", limit=400)
    steps = [r[2] for r in some]
    assert thinned and 300 <= len(steps) <= 500 and steps == sorted(steps)
    assert steps[-1] == 1999 and steps[0] == 0  # spread over the whole run, last block kept
    assert {r[5] for r in some} == {"loss", "acc"}  # blocks keep metrics logged together
    assert all(b - a <= 1 or b - a >= SAMPLE_BLOCK for a, b in zip(steps, steps[1:], strict=False))
    assert tracking.tracked(om.bucket) == []

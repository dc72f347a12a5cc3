"""Schedules: cron and friendly text, claims, missed runs, schedulers sharing a catalog."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from omops._cron import next_after, to_cron
from omops.catalog import Catalog
from omops.catalog._tables import schedules
from omops.errors import InvalidData, NotFound
from omops.omega import Omega
from omops.runtime.scheduler import Scheduler

from .support import wait_for

OM = Path(sys.executable).parent / "om"
UTC = dt.UTC


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("every 5 minutes", "*/5 * * * *"),
        ("every minute", "* * * * *"),
        ("every 2 hours", "0 */2 * * *"),
        ("hourly", "0 * * * *"),
        ("daily at 06:00", "0 6 * * *"),
        ("every day at 6:30 UTC", "30 6 * * *"),
        ("weekdays at 06:00", "0 6 * * MON-FRI"),
        ("Every weekday at 06:00", "0 6 * * MON-FRI"),
        ("weekends at 10:15", "15 10 * * SAT,SUN"),
        ("mondays at 08:30", "30 8 * * MON"),
        ("every 10 seconds", "* * * * * */10"),
        ("0 6 * * MON-FRI", "0 6 * * MON-FRI"),
        ("*/15  *  * * *", "*/15 * * * *"),
    ],
)
def test_run_at_text_and_cron_lines(text: str, cron: str) -> None:
    assert to_cron(text) == cron


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every 7 minutes", "does not repeat evenly"),
        ("daily at 24:00", "is not a time of day"),
        ("daily at 06:00 CET", "Times are UTC"),
        ("tomorrow", "cannot tell when"),
        ("61 * * * *", "not a valid cron line"),
        ("", "run_at must be text"),
    ],
)
def test_bad_run_at_says_what_works(text: str, message: str) -> None:
    with pytest.raises(InvalidData, match=message):
        to_cron(text)


def test_next_after_is_strictly_after_and_utc() -> None:
    six = dt.datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # a Friday
    assert next_after("0 6 * * MON-FRI", six) == dt.datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert next_after("*/5 * * * *", six) == six + dt.timedelta(minutes=5)


def test_schedule_get_and_drop(om: Omega) -> None:
    om.jobs.create("print(job)", "nightly")
    before = dt.datetime.now(UTC)
    found = om.jobs.schedule("nightly", "weekdays at 06:00", parameters={"region": "eu"})
    assert found["cron"] == "0 6 * * MON-FRI" and found["run_at"] == "weekdays at 06:00"
    next_run = dt.datetime.fromisoformat(found["next_run"])
    assert next_run == next_after("0 6 * * MON-FRI", before) or next_run > before
    assert next_run.hour == 6 and next_run.weekday() < 5
    assert om.jobs.get_schedule("nightly")["parameters"] == {"region": "eu"}
    again = om.jobs.schedule("nightly", "every 5 minutes")  # replaces
    assert om.jobs.get_schedule("nightly")["cron"] == again["cron"] == "*/5 * * * *"
    assert [s["name"] for s in om.jobs.schedules()] == ["nightly"]
    assert om["other"].jobs.schedules() == []  # per bucket
    assert om.jobs.drop_schedule("nightly") is True
    with pytest.raises(NotFound, match="has no schedule"):
        om.jobs.get_schedule("nightly")
    with pytest.raises(NotFound):
        om.jobs.drop_schedule("nightly")
    assert om.jobs.drop_schedule("nightly", force=True) is False


def test_schedule_errors_and_dropping_a_job_drops_its_schedule(om: Omega) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        om.jobs.schedule("missing", "hourly")
    om.jobs.put({"a": 1}, "json-thing")
    with pytest.raises(InvalidData, match="not a notebook"):
        om.jobs.schedule("json-thing", "hourly")
    om.jobs.create("x = 1", "job")
    with pytest.raises(InvalidData, match="cannot tell when"):
        om.jobs.schedule("job", "sometimes")
    om.jobs.schedule("job", "hourly")
    om.jobs.drop("job")
    assert om.jobs.schedules() == []


def _set_next_run(catalog: Catalog, bucket: str, name: str, when: dt.datetime) -> None:
    """Move a schedule's next occurrence (as if the scheduler had been down since)."""
    with catalog.write_transaction() as conn:
        conn.execute(
            schedules.update()
            .where(schedules.c.bucket == bucket, schedules.c.name == name)
            .values(next_run=when)
        )


def test_an_occurrence_is_claimed_once(om: Omega) -> None:
    om.jobs.create("x = 1", "job")
    om.jobs.schedule("job", "every 5 minutes")
    _set_next_run(om.catalog, om.bucket, "job", dt.datetime.now(UTC) - dt.timedelta(hours=1))
    [due] = om.catalog.schedules.due(dt.datetime.now(UTC))
    later = dt.datetime.now(UTC) + dt.timedelta(minutes=5)
    # Eight catalogs (as eight scheduler processes have) claim the same occurrence at once.
    catalogs = [Catalog(om.catalog.url) for _ in range(8)]
    start = threading.Barrier(len(catalogs))
    won: list[bool] = []

    def claim(catalog: Catalog) -> None:
        start.wait()
        won.append(catalog.schedules.claim(due, next_run=later, task_id="t"))

    threads = [threading.Thread(target=claim, args=(c,)) for c in catalogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for catalog in catalogs:
        catalog.close()
    assert sorted(won) == [False] * 7 + [True]
    after = om.jobs.get_schedule("job")
    assert after["last_run"] == due.next_run.isoformat()
    assert dt.datetime.fromisoformat(after["next_run"]) == later


def test_missed_occurrences_fire_once(om: Omega) -> None:
    om.jobs.create("print(job)", "job")
    om.jobs.schedule("job", "every 5 minutes", parameters={"n": 1})
    missed = dt.datetime.now(UTC) - dt.timedelta(hours=3)  # 36 occurrences ago
    _set_next_run(om.catalog, om.bucket, "job", missed)
    fired = []
    scheduler = Scheduler(om, interval=0.1, on_fire=fired.append)
    [one] = scheduler.tick()
    assert scheduler.tick() == [] and fired == [one]
    assert one.scheduled == missed and one.next_run > dt.datetime.now(UTC)
    [run] = wait_for(lambda: om.jobs.results("job"), "the fired run")
    assert run["scheduled"] == missed.isoformat() and run["parameters"] == {"n": 1}
    assert run["task"] == one.task
    wait_for(lambda: om.catalog.task_log.get(one.task).status == "SUCCESS", "its task record")


# -- real scheduler processes ------------------------------------------------------


class SchedulerProcess:
    """``om runtime scheduler`` on a catalog, in a session of its own."""

    def __init__(self, home: Path, catalog: str, blobs: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
        env.update(OMOPS_HOME=str(home), OMOPS_CATALOG=catalog, OMOPS_BLOBS=blobs)
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(OM), "runtime", "scheduler", "--interval", "0.1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> str:
        """SIGTERM: it stops firing and waits for the runs it started; then its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        output = self.log.read_text(errors="replace")
        assert self.proc.returncode == 0, output
        return output


@pytest.fixture
def shared(catalog_url: str, tmp_path: Path) -> Omega:
    """An Omega on each backend whose catalog and blobs scheduler processes share."""
    instance = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"), home=str(tmp_path))
    yield instance
    instance.close()


def _start(shared: Omega, tmp_path: Path, label: str) -> SchedulerProcess:
    return SchedulerProcess(
        tmp_path, shared.catalog.url, shared.blobs.url, tmp_path / f"scheduler-{label}.log"
    )


@pytest.mark.slow
def test_a_scheduler_restart_fires_a_missed_run_once(shared: Omega, tmp_path: Path) -> None:
    shared.jobs.create("print(job)", "job")
    shared.jobs.schedule("job", "every 5 minutes")
    fired = 0
    for round_ in (1, 2):
        # Down for an hour (12 occurrences missed), then a scheduler (re)starts.
        restart = dt.datetime.now(UTC).replace(microsecond=0)
        _set_next_run(shared.catalog, shared.bucket, "job", restart - dt.timedelta(hours=1))
        process = _start(shared, tmp_path, f"round{round_}")
        try:
            wait_for(lambda n=fired + 1: len(shared.jobs.results("job")) >= n, "the missed run")
            # Give it time to fire the other missed occurrences, if it wrongly would.
            threading.Event().wait(2.0)
        finally:
            output = process.stop()
        # An occurrence that falls due while the round runs (a 5-minute boundary) fires
        # too, rightly; of the missed ones (due before the restart) exactly one fires.
        dues = [_due(line) for line in output.splitlines() if "fired job 'job'" in line]
        assert sum(due < restart for due in dues) == 1, output
        fired += len(dues)
        assert len(shared.jobs.results("job")) == fired, output
        next_run = dt.datetime.fromisoformat(shared.jobs.get_schedule("job")["next_run"])
        assert next_run > dt.datetime.now(UTC)
    assert {r["status"] for r in shared.jobs.results("job")} == {"ok"}


def _due(line: str) -> dt.datetime:
    """The due time in a scheduler's "fired job ... (bucket ..., due 2026-11-29 19:44:57)" line."""
    text = line.split(", due ", 1)[1].split(")", 1)[0]
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.slow
def test_two_schedulers_on_one_catalog_fire_each_occurrence_once(
    shared: Omega, tmp_path: Path
) -> None:
    shared.jobs.create("print(job)", "tick")
    shared.jobs.schedule("tick", "every 2 seconds")
    processes = [_start(shared, tmp_path, label) for label in ("a", "b")]
    try:
        wait_for(lambda: len(shared.jobs.results("tick")) >= 4, "four runs", timeout=120)
    finally:
        outputs = [process.stop() for process in processes]
    runs = shared.jobs.results("tick")
    occurrences = Counter(run["scheduled"] for run in runs)
    assert len(runs) >= 4
    assert max(occurrences.values()) == 1, (occurrences, outputs)
    fired = sum(output.count("fired job 'tick'") for output in outputs)
    assert fired == len(runs), outputs
    assert all(run["status"] == "ok" for run in runs)

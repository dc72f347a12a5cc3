"""``om.runtime.script(name).run(**kw)`` on the local executor: real environments, real pip."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

from omops.errors import InvalidData, InvalidName, NotFound, TaskFailed
from omops.omega import Omega
from omops.runtime import _envs
from omops.runtime._envs import MARKER, fingerprint
from omops.runtime.scripts import ScriptHosts

from .support import DEP_MODULE


def env_folder(om: Omega, wheel) -> Path:
    return Path(om.settings.home) / "envs" / f"{wheel.sha256[:16]}-{fingerprint()}"


def test_a_run_calls_run_with_the_arguments_and_records_it(om: Omega, wheels):
    meta = om.scripts.put(wheels["echo"], "echo")
    before = dt.datetime.now(dt.UTC)

    record = om.runtime.script("echo").run(n=3, region="EU").get()

    assert record["script"] == "echo" and record["revision"] == meta.revision
    assert record["package"] == "script-echo" and record["version"] == "0.1"
    assert record["args"] == {"n": 3, "region": "EU"}
    result = record["result"]
    assert result["kwargs"] == {"n": 3, "region": "EU"} and result["bucket"] == om.bucket
    # it ran in its own environment's Python, in another process
    assert result["prefix"] == str(env_folder(om, wheels["echo"])) and result["pid"] != os.getpid()
    started, ended = (dt.datetime.fromisoformat(record[k]) for k in ("started", "ended"))
    assert before <= started <= ended <= dt.datetime.now(dt.UTC)
    assert 0 < record["duration"] <= (ended - started).total_seconds() + 0.01
    assert "hello from the script" in record["output"] and "to stderr" in record["output"]


def test_the_dependency_lands_in_the_environment_only(om: Omega, wheels):
    om.scripts.put(wheels["uses-dep"], "uses-dep")

    record = om.runtime.script("uses-dep").run().get()

    assert record["result"]["value"] == 42
    assert record["result"]["file"].startswith(str(env_folder(om, wheels["uses-dep"])))
    # not in this process, nor in a fresh interpreter of the worker's environment
    assert DEP_MODULE not in sys.modules
    probe = subprocess.run([sys.executable, "-c", f"import {DEP_MODULE}"], capture_output=True)
    assert probe.returncode != 0 and b"ModuleNotFoundError" in probe.stderr


def test_a_second_run_reuses_the_environment_without_pip(
    om: Omega, wheels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    om.scripts.put(wheels["uses-dep"], "uses-dep")
    pip_log = tmp_path / "pip.log"
    monkeypatch.setenv("PIP_LOG", str(pip_log))  # every pip run appends here

    clock = time.perf_counter()
    first = om.runtime.script("uses-dep").run().get()
    first_seconds = time.perf_counter() - clock
    logged = pip_log.stat().st_size
    # pip could not install the dependency now: it must not be asked to
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    clock = time.perf_counter()
    second = om.runtime.script("uses-dep").run().get()
    second_seconds = time.perf_counter() - clock

    assert first["env"]["created"] is True and first["env"]["install_seconds"] > 0
    assert logged > 0  # the first run did run pip
    assert second["env"]["created"] is False and second["env"]["install_seconds"] is None
    assert pip_log.stat().st_size == logged  # no pip process ran for the second
    assert second["result"] == first["result"]
    assert second_seconds < 1.0 and second_seconds < first_seconds / 2, (
        first_seconds,
        second_seconds,
    )


def test_a_fresh_process_per_run_without_warm_hosts(om: Omega, wheels):
    om.context.part("scripts", lambda: ScriptHosts(size=0))
    om.scripts.put(wheels["echo"], "echo")

    first = om.runtime.script("echo").run(n=1).get()
    second = om.runtime.script("echo").run(n=2).get()

    assert first["env"]["warm"] is False and second["env"]["warm"] is False
    assert second["result"]["kwargs"] == {"n": 2} and second["env"]["created"] is False
    assert "hello from the script" in second["output"]


def test_warm_runs_are_fresh_processes(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    pids = {om.runtime.script("echo").run().get()["result"]["pid"] for _ in range(3)}
    records = [om.runtime.script("echo").run().get() for _ in range(2)]
    assert all(r["env"]["warm"] for r in records)
    assert len(pids | {r["result"]["pid"] for r in records}) == 5


def test_a_script_that_raises_fails_with_its_error_and_the_process_lives_on(om: Omega, wheels):
    om.scripts.put(wheels["raises"], "raises")
    om.scripts.put(wheels["echo"], "echo")

    result = om.runtime.script("raises").run(n=-1)

    with pytest.raises(TaskFailed) as caught:
        result.get()
    failure = caught.value
    assert failure.exc_type == "ValueError"
    assert failure.exc_message == "n must be positive, got -1"
    assert "in helper" in failure.remote_traceback and "script_raises/__init__.py" in (
        failure.remote_traceback
    )
    assert "_script_host" not in failure.remote_traceback  # the script's frames only
    assert om.runtime.script("echo").run().get()["result"]["kwargs"] == {}
    assert om.runtime.script("raises").run(n=5).status == "FAILURE"


def test_a_script_that_dies_or_returns_no_json_is_reported(om: Omega, wheels):
    om.scripts.put(wheels["exits"], "exits")
    om.scripts.put(wheels["not-json"], "not-json")

    with pytest.raises(TaskFailed, match=r"ScriptDied: script 'exits' ended \(exit status 3\)"):
        om.runtime.script("exits").run().get()
    with pytest.raises(TaskFailed, match="InvalidData: .*object is not JSON-able"):
        om.runtime.script("not-json").run().get()


def test_the_script_om_is_the_callers_store_and_bucket(om: Omega, wheels):
    dev = om["dev"]
    dev.scripts.put(wheels["writes"], "writes")

    record = dev.runtime.script("writes").run(rows=4).get()

    assert record["result"] == {"default": ["from-script"], "bucket": "dev"}
    pd.testing.assert_frame_equal(dev.datasets.get("from-script"), pd.DataFrame({"x": range(4)}))
    assert om.datasets.list() == []


def test_a_revision_can_be_run_by_tag(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "s", tag="v1")
    om.scripts.put(wheels["raises"], "s")
    assert om.runtime.script("s@v1").run(n=1).get()["result"]["kwargs"] == {"n": 1}
    with pytest.raises(TaskFailed, match="ValueError"):
        om.runtime.script("s").run().get()


def test_bad_calls_fail_before_anything_runs(om: Omega, wheels):
    om.scripts.put({"not": "a package"}, "json")
    om.scripts.put(wheels["echo"], "echo")
    with pytest.raises(NotFound, match="nope"):
        om.runtime.script("nope").run()
    with pytest.raises(InvalidData, match="python.json, not a package"):
        om.runtime.script("json").run()
    with pytest.raises(InvalidData, match="travel as JSON"):
        om.runtime.script("echo").run(when=object())
    with pytest.raises(InvalidName):
        om.runtime.script("echo[a]")
    assert not (Path(om.settings.home) / "envs").exists()


def test_a_crashed_install_is_not_reused(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    folder = env_folder(om, wheels["echo"])
    folder.mkdir(parents=True)
    (folder / "half-written").write_text("an install killed halfway leaves no marker")

    record = om.runtime.script("echo").run().get()

    assert record["env"]["created"] is True
    assert not (folder / "half-written").exists() and (folder / MARKER).is_file()


def test_a_failing_install_says_what_pip_said(
    om: Omega, wheels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    om.scripts.put(wheels["uses-dep"], "uses-dep")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # the dependency is nowhere

    with pytest.raises(TaskFailed) as caught:
        om.runtime.script("uses-dep").run().get()

    assert caught.value.exc_type == "InvalidData"
    assert "omops-test-dep" in caught.value.exc_message and "pip said" in caught.value.exc_message
    assert not env_folder(om, wheels["uses-dep"]).exists()  # nothing half-made is kept
    monkeypatch.undo()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", os.environ["PIP_FIND_LINKS"])


def test_scripts_run_in_parallel_batches(om: Omega, wheels):
    om.scripts.put(wheels["uses-dep"], "uses-dep")
    om.scripts.put(wheels["echo"], "echo")

    with om.runtime.parallel() as crt:  # worker processes of the local executor
        crt.script("uses-dep").run()
        crt.script("echo").run(n=1)
        crt.script("uses-dep").run()
        records = crt.run().get(timeout=240)

    assert [records[0]["result"]["value"], records[2]["result"]["value"]] == [42, 42]
    assert records[1]["result"]["kwargs"] == {"n": 1}
    assert sorted(r["env"]["created"] for r in (records[0], records[2])) == [False, True]


def test_concurrent_first_runs_in_processes_install_once(om: Omega, wheels):
    om.scripts.put(wheels["uses-dep"], "uses-dep")
    probe = "from omops.runtime._envs import fingerprint; print(fingerprint())"
    theirs = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    folder = env_folder(om, wheels["uses-dep"]).with_name(
        f"{wheels['uses-dep'].sha256[:16]}-{theirs.stdout.strip()}"
    )  # their import path differs from pytest's: so does the environment's name
    code = (
        "import orjson, omops; "
        "print(orjson.dumps(omops.Omega().runtime.script('uses-dep').run().get()).decode())"
    )
    envs = folder.parent
    envs.mkdir(parents=True)
    # Hold the install lock until all three processes wait for it, then let them race.
    with _envs._locked(envs / f"{folder.name}.install.lock", "exclusive"):
        procs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(3)
        ]
        time.sleep(4)
        assert not folder.exists()
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0]
    records = [orjson.loads(out) for out in outputs]
    assert [r["result"]["value"] for r in records] == [42, 42, 42]
    assert sorted(r["env"]["created"] for r in records) == [False, False, True]
    assert {r["env"]["path"] for r in records} == {str(folder)}


def test_concurrent_first_runs_in_threads_install_once(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    ids = [om.runtime.submit_script("echo", i=i) for i in range(3)]
    records = [om.runtime.result(i).get(timeout=240) for i in ids]
    assert [r["result"]["kwargs"] for r in records] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert sorted(r["env"]["created"] for r in records) == [False, False, True]
    assert [om.catalog.task_log.get(i).status for i in ids] == ["SUCCESS"] * 3


def test_least_recently_used_environments_are_pruned(
    om: Omega, wheels, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_envs, "ENVS_KEPT", 2)
    om.context.part("scripts", lambda: ScriptHosts(size=0))  # no host holds an environment
    for name in ("echo", "writes", "raises"):
        om.scripts.put(wheels[name], name)
    om.runtime.script("echo").run().get()
    om.runtime.script("writes").run().get()
    with _envs.using_env(
        Path(om.settings.home) / "envs", env_folder(om, wheels["echo"]).name, None
    ):  # echo is in use: kept, though least recently used
        with pytest.raises(TaskFailed):
            om.runtime.script("raises").run().get()
        assert env_folder(om, wheels["echo"]).is_dir()
        assert not env_folder(om, wheels["writes"]).exists()
        assert env_folder(om, wheels["raises"]).is_dir()


def test_runs_in_an_experiment_log_task_events(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    om.scripts.put(wheels["raises"], "raises")

    with om.runtime.experiment("scripted") as exp:
        om.runtime.script("echo").run(n=1).get()
        with pytest.raises(TaskFailed):
            om.runtime.script("raises").run(n=0).get()
    om.runtime.script("echo").run(n=2).get()  # not in the block: not logged

    frame = exp.data(event=["task_call", "task_success", "task_failure"])
    assert list(zip(frame["event"], frame["key"], strict=True)) == [
        ("task_call", "omops.script"),
        ("task_success", "omops.script"),
        ("task_call", "omops.script"),
        ("task_failure", "omops.script"),
    ]
    assert frame["value"].iloc[0]["args"] == {"name": "echo", "kwargs": {"n": 1}}
    assert frame["value"].iloc[1]["result"]["result"]["kwargs"] == {"n": 1}
    assert "n must be positive" in frame["value"].iloc[3]["message"]


def test_a_warm_host_takes_overlapping_runs(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "echo")
    om.runtime.script("echo").run().get()  # installs, starts the host

    ids = [om.runtime.submit_script("echo", i=i) for i in range(4)]  # background threads
    records = [om.runtime.result(i).get(timeout=120) for i in ids]

    assert [r["result"]["kwargs"] for r in records] == [{"i": i} for i in range(4)]
    assert all(r["env"]["warm"] and not r["env"]["created"] for r in records)
    assert len({r["result"]["pid"] for r in records}) == 4

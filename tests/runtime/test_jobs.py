"""Job runs (omops/runtime/jobs.py) in real Jupyter kernels, on the local executor and on
real Celery workers (the runtime suite's clusters)."""

from __future__ import annotations

import pandas as pd
import pytest
from jobs.support import notebook, stdout_of

from omops.errors import InvalidData, NotFound, TaskFailed
from omops.omega import Omega
from omops.runtime import Runtime

TIMEOUT = 180


def test_parameters_reach_the_notebook_both_ways(om: Omega, rt: Runtime) -> None:
    om.jobs.put(
        notebook(
            "print('papermill', region, n * 2)",
            "print('seed', job.get('region'), job.get('n'), sorted(job))",
            parameters="region = 'us'\nn = 1",
        ),
        "params",
    )
    record = rt.job("params").run(region="eu", n=21).get(timeout=TIMEOUT)
    assert record["status"] == "ok"
    assert record["job"] == "params"
    assert record["parameters"] == {"region": "eu", "n": 21}
    assert record["duration"] > 0
    assert record["result"].startswith("results/params_")
    executed = om.jobs.get(record["result"])
    out = stdout_of(executed)
    assert "papermill eu 42" in out
    assert "seed eu 21 ['n', 'region']" in out
    # The injected cell comes right after the cell tagged 'parameters'.
    assert executed.cells[1].metadata["tags"] == ["injected-parameters"]
    assert executed.metadata["omops"]["parameters"] == {"region": "eu", "n": 21}
    meta = om.jobs.metadata(record["result"])
    assert meta.attributes["status"] == "ok"
    assert meta.attributes["started"] == record["started"]
    # Without parameters the notebook's own defaults hold, and job is an empty dict.
    default = rt.job("params").run().get(timeout=TIMEOUT)
    out = stdout_of(om.jobs.get(default["result"]))
    assert "papermill us 2" in out and "seed None None []" in out


def test_the_kernel_works_on_the_jobs_own_store_and_bucket(om: Omega, rt: Runtime) -> None:
    om.datasets.put(pd.DataFrame({"x": [1, 2, 3]}), "input", append=False)
    om.jobs.create(
        "import omops as om\n"
        "df = om.datasets.get('input')\n"
        "om.datasets.put(df * factor, 'output', append=False)\n"
        "print(om.datasets.get('output')['x'].tolist())",
        "pipeline",
        parameters={"factor": 1},
    )
    record = rt.job("pipeline").run(factor=10).get(timeout=TIMEOUT)
    assert "[10, 20, 30]" in stdout_of(om.jobs.get(record["result"]))
    assert om.datasets.get("output")["x"].tolist() == [10, 20, 30]


def test_a_failing_cell_is_reported_and_stored_and_the_worker_lives_on(
    om: Omega, rt: Runtime
) -> None:
    om.jobs.put(notebook("x = 1", "print('before')\n1 / 0", "print('never')"), "bad")
    with pytest.raises(TaskFailed) as failed:
        rt.job("bad").run().get(timeout=TIMEOUT)
    assert failed.value.exc_type == "ZeroDivisionError"
    assert "failed in cell 2" in failed.value.exc_message  # cell 0 is the injected one
    assert "ZeroDivisionError" in failed.value.remote_traceback
    [run] = om.jobs.results("bad")
    assert run["status"] == "failed"
    assert run["error"]["cell"] == 2
    assert run["error"]["ename"] == "ZeroDivisionError"
    assert run["error"]["evalue"] == "division by zero"
    assert "1 / 0" in run["error"]["traceback"]
    assert "\x1b[" not in run["error"]["traceback"]  # plain text, no terminal colours
    assert run["result"] in failed.value.exc_message
    executed = om.jobs.get(run["result"])
    assert "before" in stdout_of(executed) and "never" not in stdout_of(executed)
    # The process that ran it runs the next job.
    om.jobs.create("print('fine')", "good")
    assert rt.job("good").run().get(timeout=TIMEOUT)["status"] == "ok"


def test_a_kernel_that_dies_is_reported_not_hung_on(om: Omega, rt: Runtime) -> None:
    om.jobs.put(notebook("import os", "os._exit(3)", "print('never')"), "dies")
    with pytest.raises(TaskFailed) as failed:
        rt.job("dies").run().get(timeout=TIMEOUT)
    assert failed.value.exc_type == "DeadKernelError"
    assert "the kernel died while running this cell (exit status 3)" in failed.value.exc_message
    [run] = om.jobs.results("dies")
    assert run["status"] == "failed" and run["error"]["cell"] == 2
    om.jobs.create("print('alive')", "after")
    assert rt.job("after").run().get(timeout=TIMEOUT)["status"] == "ok"


def test_map_runs_once_per_item_and_answers_in_input_order(om: Omega, rt: Runtime) -> None:
    om.jobs.create(
        "import time\ntime.sleep(0.3 * (3 - job['param']))\nprint('item', job['param'], param)",
        "chunk",
    )
    records = rt.job("chunk").map(range(4), region="eu").get(timeout=TIMEOUT)
    assert [r["parameters"] for r in records] == [{"region": "eu", "param": i} for i in range(4)]
    for i, record in enumerate(records):
        assert f"item {i} {i}" in stdout_of(om.jobs.get(record["result"]))
    assert len(om.jobs.results("chunk")) == 4
    assert rt.job("chunk").map([]).get(timeout=TIMEOUT) == []


def test_parallel_collects_job_runs(om: Omega, rt: Runtime) -> None:
    om.jobs.create("print('one', job)", "compute-1")
    om.jobs.create("print('two', job)", "compute-2")
    with rt.parallel() as batch:
        batch.job("compute-1").run(n=1)
        batch.job("compute-1").run(n=2)
        batch.job("compute-2").run()
        results = batch.run()
    records = results.get(timeout=TIMEOUT)
    assert [(r["job"], r["parameters"]) for r in records] == [
        ("compute-1", {"n": 1}),
        ("compute-1", {"n": 2}),
        ("compute-2", {}),
    ]


def test_tracked_runs_log_task_events(om: Omega, rt: Runtime) -> None:
    om.jobs.create("print(job)", "tracked", parameters={"n": 0})
    om.jobs.create("raise ValueError('nope')", "broken")
    with om.runtime.experiment("jobs-exp") as exp:
        rt.job("tracked").run(n=5).get(timeout=TIMEOUT)
        with pytest.raises(TaskFailed):
            rt.job("broken").run().get(timeout=TIMEOUT)
    frame = exp.data(event=["task_call", "task_success", "task_failure"])
    rows = list(zip(frame["event"], frame["key"], strict=True))
    assert rows.count(("task_call", "omops.job")) == 2
    assert ("task_success", "omops.job") in rows and ("task_failure", "omops.job") in rows
    calls = frame[frame["event"] == "task_call"]["value"].tolist()
    assert {"name": "tracked", "kwargs": {"n": 5}} in [c["args"] for c in calls]
    success = frame[frame["event"] == "task_success"]["value"].iloc[0]
    assert success["result"]["status"] == "ok"


def test_cell_timeout(local_cluster) -> None:
    om = local_cluster.omega()
    om.jobs.create("import time\ntime.sleep(30)", "slow")
    with pytest.raises(TaskFailed) as failed:
        om.runtime.job("slow", timeout=1).run().get(timeout=TIMEOUT)
    assert failed.value.exc_type == "CellTimeoutError"
    assert "did not finish within 1 s" in failed.value.exc_message
    with pytest.raises(InvalidData, match="seconds >= 0"):
        om.runtime.job("slow", timeout=-1)


def test_bad_calls_fail_before_any_kernel(local_cluster) -> None:
    om = local_cluster.omega()
    with pytest.raises(TaskFailed, match="NotFound"):
        om.runtime.job("missing").run().get()
    with pytest.raises(NotFound, match="does not exist"):
        om.runtime.job("missing").submit()
    om.jobs.put({"not": "a notebook"}, "json-thing")
    with pytest.raises(TaskFailed, match="not a notebook"):
        om.runtime.job("json-thing").run().get()
    om.jobs.create("x = 1", "ok")
    with pytest.raises(InvalidData, match="JSON values"):
        om.runtime.job("ok").run(when=object())
    assert om.jobs.results("ok") == []


def test_a_notebook_made_with_another_python_kernel_runs_on_python3(local_cluster) -> None:
    om = local_cluster.omega()
    nb = notebook("print('ran')")
    nb.metadata["kernelspec"] = {"name": "my-venv", "display_name": "x", "language": "python"}
    om.jobs.put(nb, "other-kernel")
    record = om.runtime.job("other-kernel").run().get(timeout=TIMEOUT)
    assert record["kernel"] == "python3"
    assert "ran" in stdout_of(om.jobs.get(record["result"]))


def test_a_kernel_pool_hands_out_started_kernels_each_used_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OMOPS_KERNEL_POOL", "1")
    om = Omega(home=str(tmp_path / "home"))
    try:
        om.jobs.create("import os\nprint('pid', os.getpid())\nleak = 'from an earlier run'", "a")
        om.jobs.create("print('leaked' if 'leak' in globals() else 'clean')", "b")
        first = om.runtime.job("a").run().get(timeout=TIMEOUT)
        assert first["pooled_kernel"] is False  # nothing was started ahead yet

        def pooled_run(name: str) -> dict:
            # The spare is started in the background after each run; give it time.
            for _ in range(100):
                record = om.runtime.job(name).run().get(timeout=TIMEOUT)
                if record["pooled_kernel"]:
                    return record
            raise AssertionError("no run got a kernel started ahead")

        second = pooled_run("b")
        assert "clean" in stdout_of(om.jobs.get(second["result"]))
        third = pooled_run("a")
        pids = [stdout_of(om.jobs.get(r["result"])).split()[1] for r in (first, third)]
        assert pids[0] != pids[1]  # a fresh kernel per run
    finally:
        om.close()
    monkeypatch.setenv("OMOPS_KERNEL_POOL", "lots")
    broken = Omega(home=str(tmp_path / "home"))
    broken.jobs.create("x = 1", "c")
    with pytest.raises(TaskFailed, match="OMOPS_KERNEL_POOL must be a number"):
        broken.runtime.job("c").run().get()
    broken.close()


def _kernels_of_this_process() -> set[int]:
    import psutil

    return {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if "ipykernel_launcher" in " ".join(child.cmdline())
    }


def test_spare_kernels_stop_with_their_omega_closed_or_dropped(tmp_path, monkeypatch) -> None:
    import gc

    from jobs.support import wait_for

    monkeypatch.setenv("OMOPS_KERNEL_POOL", "1")
    before = _kernels_of_this_process()
    for close in (True, False):
        om = Omega(home=str(tmp_path / f"home-{close}"))
        om.jobs.create("x = 1", "a")
        om.runtime.job("a").run().get(timeout=TIMEOUT)
        spares = wait_for(lambda: _kernels_of_this_process() - before, "a spare kernel")
        if close:
            om.close()
        else:
            om.catalog.close()
            del om
            gc.collect()
        wait_for(lambda s=spares: not (s & _kernels_of_this_process()), "the spare's exit")

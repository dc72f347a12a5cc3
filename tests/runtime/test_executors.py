"""Executors by broker URL scheme: the registry, a third executor, missing extras."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from omops.errors import ConfigError
from omops.omega import Omega
from omops.runtime.executors import Executor, known_executors, register_executor
from omops.runtime.local import LocalExecutor
from omops.runtime.plan import Batch, TaskCall
from omops.runtime.results import TaskResult


class RecordingExecutor(LocalExecutor):
    """A third executor: runs tasks here, and remembers each task it was given."""

    seen: list[tuple[str, str | None]] = []

    def __init__(self, om: Omega, url: str | None) -> None:
        super().__init__(om, url)
        self.url = url

    def submit(
        self, work: TaskCall | Batch, *, task_id: str | None = None, background: bool = False
    ) -> TaskResult:
        calls = work.calls if isinstance(work, Batch) else (work,)
        RecordingExecutor.seen.extend((call.task, self.url) for call in calls)
        return super().submit(work, task_id=task_id, background=background)


def test_a_third_executor_is_one_registration(tmp_path) -> None:
    register_executor("recording", f"{__name__}:RecordingExecutor", clobber=True)
    om = Omega(home=str(tmp_path), broker="recording://anywhere")
    om.datasets.put(pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, 4.0]}), "xy")
    om.models.put(LinearRegression(), "lr")

    om.runtime.model("lr").fit("xy[x]", "xy[y]").get()
    values = om.runtime.model("lr").predict("xy[x]").get()

    assert [round(v, 6) for v in values] == [2.0, 4.0]
    assert RecordingExecutor.seen[-2:] == [("omops.model", "recording://anywhere")] * 2
    assert isinstance(om.runtime.executor, Executor)
    assert om.runtime.executor is om["dev"].runtime.executor, "one executor per Omega"
    assert om.runtime.status()["executor"] == "local"
    om.close()


def test_the_known_schemes() -> None:
    known = known_executors()
    assert known["local"].target == "omops.runtime.local:LocalExecutor"
    for scheme in ("amqp", "amqps", "redis", "rediss"):
        assert known[scheme].target == "omops.runtime.celery_executor:CeleryExecutor"
    assert known["redis"].extra == "redis"


def test_an_unknown_scheme_names_the_known_ones(tmp_path) -> None:
    om = Omega(home=str(tmp_path), broker="kafka://user:secret@host/")
    with pytest.raises(ConfigError, match=r"no executor is known for scheme 'kafka'") as info:
        om.runtime.model("anything").predict("x")
    assert "secret" not in str(info.value) and "amqp" in str(info.value)


def test_a_scheme_is_not_taken_over_by_accident() -> None:
    with pytest.raises(ConfigError, match="clobber=True"):
        register_executor("amqp", f"{__name__}:RecordingExecutor")
    with pytest.raises(ConfigError, match="is not a URL scheme"):
        register_executor("Not A Scheme", f"{__name__}:RecordingExecutor")


def test_redis_without_its_package_is_one_line_naming_the_extra(tmp_path) -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"  # as if the redis extra were missing
        "from omops.cli import main; main()\n"
    )
    env = {
        "OMOPS_HOME": str(tmp_path),
        "OMOPS_BROKER": "redis://127.0.0.1:9/0",
        "PATH": "/usr/bin:/bin",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, "runtime", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'omops[redis]'" in lines[0]

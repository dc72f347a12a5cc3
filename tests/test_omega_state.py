"""State belongs to the Omega: two Omegas never share models, plugins or caches,
and omops changes nothing global (warnings, the environment, ``__main__``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from omops.omega import Omega
from omops.plugins.registry import BUILTIN, SUPPORTS_ORDER, Registry
from omops.plugins.sklearn import SklearnPlugin

X = pd.DataFrame({"a": np.linspace(-1, 1, 20), "b": np.linspace(1, -1, 20)})
Y = (X["a"] > 0).astype(int)


class CountingPlugin(SklearnPlugin):
    """scikit-learn models, counting what this plugin instance is asked to do."""

    def __init__(self) -> None:
        self.loads = 0
        self.performed = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.loads += 1
        return super().get(*args, **kwargs)

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        self.performed += 1
        return super().perform(*args, **kwargs)


def counting_registry() -> Registry:
    specs = {**BUILTIN, "sklearn.joblib": f"{__name__}:CountingPlugin"}
    return Registry(specs, SUPPORTS_ORDER)


def test_an_omega_runs_its_own_plugins(tmp_path: Path) -> None:
    custom = Omega(home=str(tmp_path), plugins=counting_registry())
    plain = Omega(home=str(tmp_path))
    custom.datasets.put(X, "x")
    custom.models.put(LogisticRegression().fit(X, Y), "m")
    plugin = custom.plugins.get("sklearn.joblib")

    plain.runtime.model("m").predict("x").get()  # the default plugins: not counted
    assert (plugin.loads, plugin.performed) == (0, 0)
    custom.runtime.model("m").predict("x").get()
    custom.runtime.model("m").predict("x").get()
    assert plugin.loads == 1, "loaded once per revision by this Omega"
    assert plugin.performed >= 1
    custom["dev"].models.put(LogisticRegression().fit(X, Y), "m")
    custom["dev"].datasets.put(X, "x")
    custom["dev"].runtime.model("m").predict("x").get()
    assert plugin.loads == 2, "a bucket view uses its parent's plugins"


def test_two_omegas_load_their_own_models(tmp_path: Path) -> None:
    one = Omega(home=str(tmp_path), plugins=counting_registry())
    two = Omega(home=str(tmp_path), plugins=counting_registry())
    one.datasets.put(X, "x")
    one.models.put(LogisticRegression().fit(X, Y), "m")
    for om in (one, two, one, two):
        om.runtime.model("m").predict("x").get()
    assert one.plugins.get("sklearn.joblib").loads == 1
    assert two.plugins.get("sklearn.joblib").loads == 1
    one.close()
    one.runtime.model("m").predict("x").get()
    assert one.plugins.get("sklearn.joblib").loads == 2, "close() forgot the loaded models"


def test_predictions_change_no_warnings_filter(tmp_path: Path) -> None:
    om = Omega(home=str(tmp_path))
    om.datasets.put(X, "x")
    om.models.put(LogisticRegression().fit(X, Y), "m")
    before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the lane sends arrays without any warning
        for _ in range(3):
            om.runtime.model("m").predict("x").get()
    assert warnings.filters == before


def test_a_script_is_not_run_again_by_parallel_work(tmp_path: Path) -> None:
    """The workers of parallel() never import the caller's __main__ again."""
    runs = tmp_path / "runs.txt"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            import pandas as pd
            from sklearn.linear_model import LogisticRegression
            from omops.omega import Omega

            with open({str(runs)!r}, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
            om = Omega(home={str(tmp_path / "home")!r})
            X = pd.DataFrame({{"a": [0.0, 1.0, 2.0, 3.0]}})
            om.datasets.put(X, "x")
            om.models.put(LogisticRegression().fit(X, [0, 0, 1, 1]), "m")
            main = sys.modules["__main__"]
            with om.runtime.parallel() as crt:
                crt.model("m").predict("x")
                crt.model("m").predict("x")
                assert main.__file__ == {str(script)!r}
                results = crt.run().get(timeout=120)
            assert results == [[0, 0, 1, 1]] * 2, results
            assert main.__file__ == {str(script)!r} and main.__spec__ is None
            om.close()
            print("ok")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert len(runs.read_text().split()) == 1, "the script's top level ran once"


def test_the_first_batch_says_why_it_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    om = Omega(home=str(tmp_path))
    om.datasets.put(X, "x")
    om.models.put(LogisticRegression().fit(X, Y), "m")
    with caplog.at_level(logging.INFO, logger="omops.runtime"):
        with om.runtime.parallel() as crt:
            crt.model("m").predict("x")
            answers = crt.run().get(timeout=120)
        with om.runtime.parallel() as crt:
            crt.model("m").predict("x")
            crt.run().get(timeout=120)
    om.close()
    assert answers == [LogisticRegression().fit(X, Y).predict(X).tolist()]
    notes = [r.getMessage() for r in caplog.records if "local worker process" in r.getMessage()]
    assert len(notes) == 1 and "first batch waits" in notes[0], notes

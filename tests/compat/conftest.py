"""Fixtures of the compatibility suite: omega-ml's objects behind two real servers.

``servers`` starts, once per module, ``om runtime serve --compat omegaml`` and
a native ``om runtime serve``, each on its own copy of one prepared home (so
that runs and writes through one never show in the other), and yields each
with a second Omega on its home to prepare and check objects from Python.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scripts.support import make_package
from server.support import Server
from sklearn.linear_model import LinearRegression

from omops.omega import Omega

#: The script omega-ml's own REST tests run (its demo 'helloworld'): the greeting and its kwargs.
HELLOWORLD = """
def run(om, **kwargs):
    return ["hello from helloworld", kwargs]
"""


def _fitted(intercept: float = 0.0) -> LinearRegression:
    """y = 2x (+ intercept): 5 is predicted 10.0 (or 10.0 + intercept)."""
    x = pd.DataFrame({"v": np.arange(10.0)})
    model = LinearRegression().fit(x, x["v"] * 2)
    model.intercept_ = intercept
    return model


def prepare(om: Omega, sources: Path) -> None:
    """Every object the cases use, as omega-ml's REST tests and docs set them up."""
    om.models.put(_fitted(), "regression")
    om.models.put(_fitted(), "versioned", tag="commit1")
    om.models.put(_fitted(10.0), "versioned", tag="commit2")
    om.models.put(_fitted(), "project/test/regression")
    om.models.put(_fitted(), "defaultonly")
    om.models.put(LinearRegression(), "mymodel")
    om.models.put(LinearRegression(), "fitasync")
    om.datasets.put([5], "foo", append=False)
    om.datasets.put([5], "project/test/foo", append=False)
    om.datasets.put(pd.DataFrame({"x": np.arange(100), "y": np.arange(100)}), "test")
    frame = pd.DataFrame({"x": np.arange(10.0)})
    om.datasets.put(frame, "datax", append=False)
    om.datasets.put(frame * 2, "datay", append=False)
    om.datasets.put(frame, "dropme", append=False)
    mine = om["mybucket"]
    mine.models.put(_fitted(), "regression")
    mine.datasets.put(pd.DataFrame({"x": [1, 2, 3]}), "bucketdata")
    for job in ("infojob", "testjob", "asyncjob"):
        om.jobs.create("print('hello')", job)
    om.scripts.put(str(make_package(sources, "helloworld", HELLOWORLD)), "helloworld")


@pytest.fixture(scope="session")
def compat_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("compat-template")
    om = Omega(home=str(home))
    prepare(om, tmp_path_factory.mktemp("compat-sources"))
    om.close()
    return home


@dataclass
class Served:
    """One profile's server and an Omega on its home."""

    profile: str
    server: Server
    store: Omega


@pytest.fixture(scope="module")
def servers(
    compat_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    served: dict[str, Served] = {}
    try:
        for profile in ("omegaml", "native"):
            home = tmp_path_factory.mktemp(f"served-{profile}") / "home"
            shutil.copytree(compat_template, home)
            server = Server(home, "--compat", profile)
            server.__enter__()
            served[profile] = Served(profile, server, Omega(home=str(home)))
        yield served
    finally:
        for one in served.values():
            one.store.close()
            one.server.stop()

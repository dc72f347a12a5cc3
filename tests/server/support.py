"""Helpers for the server suite: the data, the models, and a real served process.

:class:`Server` runs ``om runtime serve`` as a subprocess (its own process
group, so ``--workers`` children go with it), waits for ``/health`` and talks
to it over real HTTP with httpx. Requests always go to loopback (127.0.0.1, or
[::1] for an IPv6 host), also when the server binds 0.0.0.0.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from omops.omega import Omega

OM = Path(sys.prefix) / "bin" / "om"
PREDICT = "/api/v1/model/forecast/predict"
#: Inputs 1.0 and 18.0 are classified 0 and 1 by :func:`classifier`.
X_SPLIT = {"columns": ["x"], "data": [[1.0], [18.0]]}
INPUT_SHAPES = {
    "split": X_SPLIT,
    "columns": {"data": {"x": [1.0, 18.0]}},
    "records": [{"x": 1.0}, {"x": 18.0}],
    "records-in-data": {"data": [{"x": 1.0}, {"x": 18.0}]},
}
_SERVICE_VARIABLES = ("OMOPS_CATALOG", "OMOPS_BLOBS", "OMOPS_BROKER", "OMOPS_BUCKET")
#: What a local caller looks like in-process: from 127.0.0.1, to Host 127.0.0.1. Starlette's
#: TestClient defaults ('testclient' to 'testserver') are neither, and a keyless app refuses them.
LOCAL = {"base_url": "http://127.0.0.1", "client": ("127.0.0.1", 50000)}


def local_client(app: FastAPI, **kwargs: Any) -> TestClient:
    """A TestClient that calls ``app`` as a client on this machine would."""
    return TestClient(app, **{**LOCAL, **kwargs})


def stats_frame() -> pd.DataFrame:
    """20 rows: ``x`` 0..19, ``sales`` 0..190, ``y`` 1 from x=10, ``region`` EU/US."""
    x = np.arange(20.0)
    return pd.DataFrame(
        {
            "x": x,
            "sales": (x * 10).astype("int64"),
            "y": (x >= 10).astype("int64"),
            "region": ["EU", "US"] * 10,
        }
    )


@functools.cache
def classifier(*, flipped: bool = False) -> LogisticRegression:
    """LogisticRegression on ``x``: 0 below 10, 1 above (the other way round if flipped)."""
    frame = stats_frame()
    y = 1 - frame["y"] if flipped else frame["y"]
    return LogisticRegression().fit(frame[["x"]], y)


def copy_home(template: Path, target: Path) -> Path:
    """A copy of a prepared home (much faster than preparing another)."""
    shutil.copytree(template, target)
    return target


def prepare(om: Omega) -> Omega:
    """Dataset 'stats' and the fitted model 'forecast' (tag 'v1')."""
    om.datasets.put(stats_frame(), "stats", append=False)
    om.models.put(classifier(), "forecast", tag="v1")
    return om


class Broken(ClassifierMixin, BaseEstimator):
    """A model with a bug: ``predict`` raises RuntimeError whatever the input."""

    def fit(self, X, y):  # noqa: N803
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):  # noqa: N803
        raise RuntimeError("a bug inside the model")


class SlowFit(ClassifierMixin, BaseEstimator):
    """``fit`` sleeps ``delay`` seconds, then remembers the classes."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay

    def fit(self, X, y):  # noqa: N803
        time.sleep(self.delay)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):  # noqa: N803
        return np.full(len(X), self.classes_[0])


def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    """A JSON error answer ``{"error": code, "message": text}`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    for fragment in fragments:
        assert fragment in body["message"] or fragment == body["error"], body
    return body


def wait_for_task(client: Any, location: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Poll a task's result URL until it answers 200 (finished)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        assert response.json()["status"] in ("PENDING", "STARTED"), response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"task at {location} still running after {timeout}s")
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host.strip("[]"), 0))
        return sock.getsockname()[1]


def om_env(home: Path, **variables: str) -> dict[str, str]:
    """This process's environment with its own OMOPS_HOME and nothing else configured."""
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARIABLES}
    return {**env, "OMOPS_HOME": str(home), "COLUMNS": "200", **variables}


def run_om(home: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``om ARGS`` as the real executable against ``home``."""
    return subprocess.run(
        [str(OM), *args],
        env=om_env(home, **variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


class Server:
    """``om runtime serve ARGS`` on a free port, for the length of a ``with`` block."""

    def __init__(self, home: Path, *args: str, host: str = "127.0.0.1", **variables: str) -> None:
        self.home = home
        self.port = free_port(host)
        local = "[::1]" if ":" in host else "127.0.0.1"  # an IPv6 socket may be IPv6 only
        self.url = f"http://{local}:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        self.args = ["runtime", "serve", "--host", host, "--port", str(self.port), *args]
        self.env = om_env(home, **variables)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(OM), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"om {' '.join(self.args)} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not healthy after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

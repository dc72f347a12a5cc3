"""Worker processes and clusters for the runtime tests (used by conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from omops.errors import TaskTimeout
from omops.omega import Omega
from omops.runtime import Runtime

SESSION = uuid.uuid4().hex[:8]
QUEUE = f"omops-test-{SESSION}"
GPU = f"{QUEUE}-gpu"
OM = Path(sys.executable).parent / "om"
TESTS = Path(__file__).resolve().parent.parent  # on the workers' path: runtime.slow_models
WORKER_START_S = 90.0


class Worker:
    """One ``om runtime worker`` process (its own process group) and its log."""

    def __init__(
        self, env: dict[str, str], labels: list[str], *, concurrency: int, log: Path
    ) -> None:
        self.labels = labels
        self.log = log
        args = [
            str(OM),
            "runtime",
            "worker",
            *(f"--label={x}" for x in labels),
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def hostname(self) -> str:
        """The Celery node name ``om runtime worker`` gives itself."""
        return f"omops-{self.pid}@{socket.gethostname()}"

    def children(self) -> set[int]:
        """Pool processes (and anything else) below the worker's main process."""
        try:
            return {p.pid for p in psutil.Process(self.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, runtime: Runtime, timeout: float = WORKER_START_S) -> dict:
        """Block until the worker answered a ping on ``runtime``'s queue."""
        token = uuid.uuid4().hex
        result = runtime.ping(token)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                answer = result.get(timeout=1)
            except TaskTimeout:
                continue
            assert answer["pong"] == token
            return answer
        pytest.fail(f"worker did not answer a ping within {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class Cluster:
    """Where tasks run: the catalog, blobs and broker shared by client and workers."""

    name: str
    home: Path
    catalog: str
    blobs: str
    broker: str | None
    queue: str = QUEUE
    gpu: str = GPU
    workers: list[Worker] = field(default_factory=list)
    extra_queues: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.base = Omega(
            catalog=self.catalog, blobs=self.blobs, broker=self.broker, home=self.home
        )

    def omega(self, bucket: str | None = None) -> Omega:
        """The cluster's Omega in ``bucket`` (a fresh one when not given)."""
        return self.base[bucket or f"t{uuid.uuid4().hex[:12]}"]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process configured like this cluster's client."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
        env.update(
            OMOPS_HOME=str(self.home),
            OMOPS_CATALOG=self.catalog,
            OMOPS_BLOBS=self.blobs,
            COLUMNS="200",
        )
        if self.broker:
            env["OMOPS_BROKER"] = self.broker
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *([path] if path else [])])
        env.update(extra)
        return env

    def start_worker(self, *labels: str, concurrency: int = 2, wait: bool = True) -> Worker:
        """Start ``om runtime worker --label ...``; by default wait until it answers.

        Without labels the worker gets no ``--label`` at all: the CLI's default,
        queue ``default``.
        """
        assert self.broker, "the local executor has no workers"
        self.extra_queues.update(labels)
        first = labels[0] if labels else "default"
        log = self.home / f"worker-{len(self.workers)}-{first}.log"
        worker = Worker(self.env(), list(labels), concurrency=concurrency, log=log)
        self.workers.append(worker)
        if wait:
            worker.wait_ready(self.base.runtime.require(first))
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self.broker:
            _delete_queues(self.broker, self.extra_queues | {self.queue, self.gpu})
        self.base.close()


def _delete_queues(broker: str, names: set[str]) -> None:
    """Remove this session's queues, their exchanges and any message left in them."""
    from omops.runtime.celery_executor import make_app

    with make_app(broker) as app, app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in sorted(names):
            queue = app.amqp.queues[name](channel)  # Celery's own definition of the queue
            queue.declare()  # (Redis only deletes the bindings its channel knows)
            queue.delete()
            queue.exchange.delete()


def make_stats(n: int = 40, seed: int = 7) -> pd.DataFrame:
    """Two features and a binary target, ``sales``."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["sales"] = (df["a"] + 0.5 * df["b"] > 0).astype("int64")
    return df
